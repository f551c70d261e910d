"""The chat service behind handler.py: one module per concern.

handler.py (the Lambda entry points) calls the modules in the first group; they call the ones
below them, never the other way round, and nothing here imports handler.py.

    messaging    sending: to the room, to a channel, to one user (store, then deliver)
    changes      edits and deletes: the message changed in place, the change as the next seq
    moderation   bans: a user out of a channel or the service, for a while, and back
    channels     join, leave, presence, and which channels a token allows (and moderates)
    reads        read positions (markRead) on the server: every device agrees, unread counts exact
    indicators   typing: to a channel's members or a DM's other user, one per 2 s, never stored
    recovery     reading a conversation back: history pages (before), catching up (after)
    sessions     a connection's life: $connect, token expiry and renewal, $disconnect, found gone
    sweeper      every minute: expiry notices, expired connections, lost $disconnects, overdue leaves
    backend      POST /publish: the app's backend publishes batches, each message answered
    operators    POST /moderate: the app's backend deletes, bans, unbans and disconnects
    publisher    the core of sending, free of connections: store as the next seq, then deliver
    dispatch     one frame to many connections: inline, or through the workers
    rounds       busy rooms and channels: one frame per round with every message since the last
    gateway      API Gateway's events taken apart, and the replies it expects
    tokens       the $connect authorizer: where the token is, the policy and context it answers
    worker       the SQS delivery worker (delivery jobs, leave checks, events to send again, rounds)
    stream       the events function: the history's change stream as message.created events
    example_review  the example review function (a word list), deployed with reviewFunction=example

    ratelimit    how much a user may send (GCRA in the limits table), on how many connections
    connections  the connections table: one row per open connection
    members      the members table: which connections are in which channel
    presence     the presence table: who is online in a channel, enter and leave
    history      each conversation's log by seq: the history table (messages), stored with the head
    conversations  the conversations table: heads, send records, users online, delivery rounds
    inbox        each user's direct conversations, most recent first (in the conversations table)
    bans         who is banned from where, until when (in the conversations table)
    verifier     the one verifier of tokens: the service's own (HS256, its secret in SSM) and issuers'
    jwks         the issuers' signing keys, fetched and cached per issuer
    fanout       large audiences: delivery jobs on the SQS queue
    delivery     posting to connections through the management API
    events       events out: EventBridge entries on the stage's bus, sent at least once
    review       the review hook: the operator's function allows, rewrites or denies a message

    callers      who sent a frame: connection, user, what the token allows
    requests     what clients send: parsing and validating frames
    frames       what clients get: every reply, pushed frame and refusal the service sends
    jobs         the delivery queue's four kinds of message and their one parser
    issuers      the identity providers configured (TOKEN_ISSUERS), read strictly
    users        what a user id may be
    errors       refusals: one error type with a status and a stable code
    telemetry    structured logs and metrics (Powertools)
    aws          shared AWS client settings and errors; DynamoDB paging, batch reads, transactions
"""
