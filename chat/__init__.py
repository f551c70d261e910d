"""The chat service behind handler.py: one module per concern.

handler.py (the Lambda entry points) calls the modules in the first group; they call the ones
below them, never the other way round, and nothing here imports handler.py.

    messaging    the routes' work: send to the room, send a direct message, read history
    sessions     a connection's life: $connect and $disconnect
    gateway      API Gateway's events taken apart, and the replies it expects
    telemetry    structured logs and metrics (Powertools), one line per invocation
    tokens       the $connect authorizer: JWTs and the secret in SSM
    worker       the SQS delivery worker

    requests     what clients send: parsing and validating frames
    frames       what clients get: the JSON the service sends
    users        what a user id may be
    ratelimit    how much a user may send (GCRA in the limits table), on how many connections
    connections  the connections table: connect, disconnect, lookups, pruning
    history      the messages table: stored messages and reading them back
    fanout       large rooms: delivery jobs on the SQS queue
    delivery     posting to connections through the management API
    aws          the shared AWS client settings and errors
"""
