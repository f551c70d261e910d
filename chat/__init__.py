"""The chat service behind handler.py: one module per concern.

handler.py (the Lambda entry points) calls the modules in the first group; they call the ones
below them, never the other way round, and nothing here imports handler.py.

    messaging    sending: to the room, to a channel, to one user (store, then deliver)
    channels     join, leave, and which channels a token allows
    recovery     reading a conversation back: history pages (before), catching up (after)
    sessions     a connection's life: $connect, $disconnect, found gone
    gateway      API Gateway's events taken apart, and the replies it expects
    tokens       the $connect authorizer: JWTs and the secret in SSM
    worker       the SQS delivery worker

    callers      who sent a frame: connection, user, what the token allows
    requests     what clients send: parsing and validating frames
    frames       what clients get: the JSON the service sends
    users        what a user id may be
    ratelimit    how much a user may send (GCRA in the limits table), on how many connections
    connections  the connections table: one row per open connection
    members      the members table: which connections are in which channel
    history      each conversation's log by seq: the history and conversations tables
    fanout       large audiences: delivery jobs on the SQS queue
    delivery     posting to connections through the management API
    telemetry    structured logs and metrics (Powertools)
    aws          the shared AWS client settings and errors
"""
