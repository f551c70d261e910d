"""The whole service on one machine: moto as DynamoDB, serverless-offline as API Gateway + Lambda.

`make offline` (scripts/offline.py) and the end-to-end tests start the stack through this one
class, so what the tests check is what a user runs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any, Callable, ContextManager

from scripts import local_events
from scripts.service_config import ROOT, SLS, create_queues, create_table, param_options, resolved_config, table_resources

STAGE = "dev"
# Credentials that only moto accepts; the real AWS would refuse them.
FAKE_ACCESS_KEY = "local-offline-key"
FAKE_SECRET_KEY = "local-offline-secret"
# Tokens printed by `make offline` and `make token` stay valid this long.
DEV_TOKEN_HOURS = 12
# The chat page (web/), served as static files next to the API.
WEB_DIR = ROOT / "web"


class StackError(RuntimeError):
    """The local stack could not start; the text says why, for a person to read."""


@dataclass(frozen=True)
class Ports:
    http: int = 3000
    websocket: int = 3001
    lambda_: int = 3002
    page: int = 3003
    dynamodb: int = 5000

    # The environment variable of each port, and what listens there.
    VARIABLES = {
        "http": ("OFFLINE_HTTP_PORT", "HTTP (serverless-offline)"),
        "websocket": ("OFFLINE_WEBSOCKET_PORT", "WebSocket (serverless-offline)"),
        "lambda_": ("OFFLINE_LAMBDA_PORT", "Lambda (serverless-offline)"),
        "page": ("OFFLINE_PAGE_PORT", "chat page"),
        "dynamodb": ("OFFLINE_DYNAMODB_PORT", "DynamoDB (moto)"),
    }

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ = os.environ) -> Ports:
        """Ports from OFFLINE_HTTP_PORT, OFFLINE_WEBSOCKET_PORT, OFFLINE_LAMBDA_PORT,
        OFFLINE_PAGE_PORT and OFFLINE_DYNAMODB_PORT; StackError naming a bad one."""
        defaults = cls()
        return cls(**{
            field: port_from_env(env, variable, getattr(defaults, field))
            for field, (variable, _) in cls.VARIABLES.items()
        })

    @classmethod
    def free(cls) -> Ports:
        """Ports nobody is listening on, for tests that run beside a user's stack."""
        sockets = [socket.socket() for _ in fields(cls)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            return cls(*(sock.getsockname()[1] for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()

    def named(self) -> dict[str, int]:
        return {name: getattr(self, field) for field, (_, name) in self.VARIABLES.items()}

    def as_env(self) -> dict[str, str]:
        """The variables that make `make offline` use these ports."""
        return {variable: str(getattr(self, field)) for field, (variable, _) in self.VARIABLES.items()}


def port_from_env(env: dict[str, str] | os._Environ, variable: str, default: int) -> int:
    """A TCP port from the environment: a whole number from 1 to 65535, or a StackError."""
    text = env.get(variable, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise StackError(f"{variable} must be a port number from 1 to 65535, not {text!r}.")
    return int(text)


def port_in_use(port: int) -> bool:
    """True if anything listens on the port on IPv4 or IPv6 loopback ("localhost" may be either).

    SO_REUSEADDR, as the servers themselves set it: connections of a stopped server that linger
    in TIME_WAIT do not make the port "in use", only a listener does.
    """
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            # No IPv6 on this machine, or the address is not available: nothing listens there.
    return False


def offline_env(ports: Ports, region: str) -> dict[str, str]:
    """The environment of the local processes: fake credentials, every AWS endpoint on moto.

    Credentials, profiles and config files from the user's environment are dropped, so nothing
    started here can sign a request that real AWS would accept, and every service endpoint
    (not only DynamoDB) points at moto.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    moto = f"http://127.0.0.1:{ports.dynamodb}"
    env.update(
        AWS_ACCESS_KEY_ID=FAKE_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET_KEY,
        AWS_REGION=region,
        AWS_DEFAULT_REGION=region,
        AWS_ENDPOINT_URL=moto,
        AWS_ENDPOINT_URL_DYNAMODB=moto,
        # Lambda's Invoke API is serverless-offline's own (the review hook calls the example
        # review function there: chat/review.py).
        AWS_ENDPOINT_URL_LAMBDA=f"http://localhost:{ports.lambda_}",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        OFFLINE_WEBSOCKET_PORT=str(ports.websocket),
        # serverless.yml's serverless-offline-sqs endpoint: moto.
        OFFLINE_DYNAMODB_PORT=str(ports.dynamodb),
        # serverless-offline-sqs still uses the AWS SDK v2, which prints a notice on every start.
        AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE="1",
        # serverless-offline runs `python3` from PATH: the project's virtualenv first.
        PATH=os.pathsep.join([str(ROOT / ".venv" / "bin"), str(ROOT / ".tools" / "bin"), env.get("PATH", "")]),
        VIRTUAL_ENV=str(ROOT / ".venv"),
        PYTHONUNBUFFERED="1",
    )
    return env


class LocalStack:
    """moto_server + the tables from serverless.yml + `sls offline start` + the chat page, on
    loopback only."""

    def __init__(
        self,
        ports: Ports | None = None,
        output: IO[str] | None = None,
        log_dir: Path | None = None,
        progress: Callable[[str], None] = lambda step: None,
        spawn_guard: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
        params: dict[str, str] | None = None,
        keep_in: Path | None = None,
    ) -> None:
        self.ports = ports or Ports()
        self.params = params or {}  # serverless.yml's ${param:...} values (benchmarks change them)
        self.output = output  # where serverless-offline writes (the function logs); None: this terminal
        # moto logs every request: that goes to a file, quoted if moto fails to start.
        self.moto_log = (log_dir or ROOT / ".offline") / f"moto-{self.ports.dynamodb}.log"
        self.progress = progress  # told each step of start(), before it begins
        # Around each Popen, so that a signal cannot land between a child's start and the
        # moment it is recorded here (a child nobody would stop).
        self.spawn_guard = spawn_guard
        self.region = ""
        self.secret_parameter = ""
        self.table_names: dict[str, str] = {}
        self.queue_urls: dict[str, str] = {}
        self.jwt_secret = ""
        self._processes: dict[str, subprocess.Popen] = {}
        self._page_server: http.server.ThreadingHTTPServer | None = None
        self._sweeps = threading.Event()  # set: the sweeper's schedule stops
        self.sweeps_run = 0
        # Events out (scripts/local_events.py): the file every event on the bus ends up in (one
        # JSON line each: `make events`), and the threads that fill it and feed the history's
        # stream to the events function.
        self.events_file = (log_dir or ROOT / ".offline") / f"events-{self.ports.websocket}.jsonl"
        self._tap: local_events.Tap | None = None
        self._feeder: local_events.StreamFeeder | None = None
        # Where the token secret and the conversations are kept from one run to the next (`make
        # offline`: .offline/); None: a fresh secret and empty tables every time (the tests).
        self.keep_in = keep_in
        self.restored = 0  # items put back from the last run
        # The Cognito user pool moto serves (make token ISSUER=cognito signs in with it).
        self.user_pool_id = ""
        self.user_pool_client_id = ""

    @property
    def events_enabled(self) -> bool:
        return self._tap is not None

    def events(self) -> list[dict[str, Any]]:
        """Every event the stack's bus has sent so far (EventBridge's envelope each)."""
        return local_events.read_events(self.events_file)

    # --- addresses -------------------------------------------------------------------------

    @property
    def websocket_url(self) -> str:
        return f"ws://localhost:{self.ports.websocket}"

    @property
    def http_url(self) -> str:
        return f"http://localhost:{self.ports.http}/{STAGE}"

    @property
    def dynamodb_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.dynamodb}"

    @property
    def page_url(self) -> str:
        return f"http://localhost:{self.ports.page}/"

    def page_url_for(self, user: str) -> str:
        """The chat page signed in as this user. URL and token go in the fragment, which the
        browser never sends to any server."""
        return f"{self.page_url}#url={self.websocket_url}&token={self.token(user)}"

    @property
    def data_file(self) -> Path:
        """Where this stack's conversations are kept between runs (one file per WebSocket port,
        so two stacks side by side keep their own)."""
        return (self.keep_in or ROOT / ".offline") / DATA_FILE.format(port=self.ports.websocket)

    def dynamodb(self) -> Any:
        """A boto3 DynamoDB resource on the local moto, with the stack's fake credentials."""
        return local_session(self.region).resource("dynamodb", endpoint_url=self.dynamodb_endpoint)

    def sqs(self) -> Any:
        """A boto3 SQS client on the local moto."""
        return local_session(self.region).client("sqs", endpoint_url=self.dynamodb_endpoint)

    def token(self, user: str, hours: float = DEV_TOKEN_HOURS) -> str:
        """A token the local authorizer accepts for this user."""
        return mint_token(self.jwt_secret, user, hours)

    def url_for(self, user: str) -> str:
        """The WebSocket URL with a token for this user in the query string."""
        return f"{self.websocket_url}?token={self.token(user)}"

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        """Start everything, or stop what was started and raise StackError."""
        self.check_ports()
        try:
            # `sls print` needs no AWS access: it gets the same AWS-free environment.
            self.progress("Reading serverless.yml (sls print)")
            try:
                config = resolved_config(STAGE, env=offline_env(self.ports, "us-east-1"), params=self.params)
            except subprocess.CalledProcessError as error:
                raise StackError(f"`sls print` could not read serverless.yml:\n{error.stdout}{error.stderr}") from None
            self.region = config["provider"]["region"]
            env = offline_env(self.ports, self.region)
            self.progress(f"Starting moto (DynamoDB, SSM, SQS) on {self.dynamodb_endpoint}")
            self.moto_log.parent.mkdir(parents=True, exist_ok=True)
            with self.moto_log.open("w") as moto_output:
                moto = [sys.executable, "-m", "scripts.moto_server", "-H", "127.0.0.1", "-p", str(self.ports.dynamodb)]
                self._spawn("moto", moto, env, moto_output)
            self._wait_for(lambda: _http_ok(f"{self.dynamodb_endpoint}/moto-api/"), "moto", timeout)
            self.progress("Creating the tables and queues from serverless.yml")
            self._create_tables(config)
            self.queue_urls = create_queues(self.sqs(), config)
            self.progress("Seeding the development token secret in moto's SSM")
            self._seed_secret(config)
            if self.keep_in is not None:
                self.restored = restore_data(self.dynamodb(), self.table_names, self.data_file)
            events_params = self._create_events(config)
            self.progress("Creating a Cognito user pool in moto (alice and bob sign in with it)")
            self._create_user_pool()
            self.progress("Serving the chat page")
            self._serve_page()
            self.progress("Starting serverless-offline (API Gateway + Lambda)")
            self._spawn(
                "serverless-offline",
                [
                    str(SLS), "offline", "start", "--stage", STAGE,
                    "--host", "localhost",
                    "--httpPort", str(self.ports.http),
                    "--websocketPort", str(self.ports.websocket),
                    "--lambdaPort", str(self.ports.lambda_),
                    *param_options({**self.params, **events_params, "tokenIssuers": json.dumps([self.cognito_issuer()])}),
                ],
                env,
                self.output,
            )
            self._wait_for(lambda: _http_ok(f"{self.http_url}/ping"), "serverless-offline", timeout)
            self._wait_for(lambda: port_in_use(self.ports.websocket), "the WebSocket server", timeout)
            if self._feeder is not None:
                self.progress("Feeding the history table's stream to the events function")
                self._feeder.start()
            self.progress("Running the sweeper on its schedule")
            self._schedule_sweeper(f"{config['service']}-{STAGE}-sweeper", config["provider"]["environment"]["SWEEP_BUCKET_SECONDS"])
        except BaseException:
            self.stop()
            raise

    def check_ports(self) -> None:
        """StackError if any port is taken, naming it, its variable, and every port variable."""
        for field, (variable, name) in Ports.VARIABLES.items():
            port = getattr(self.ports, field)
            if port_in_use(port):
                every = [v for v, _ in Ports.VARIABLES.values()]
                raise StackError(
                    f"Port {port} ({name}) is already in use. Is `make offline` already running? "
                    f"Stop it, or choose another port with {variable}=... (the ports: "
                    f"{', '.join(every[:-1])} and {every[-1]})."
                )

    def failed_process(self) -> str | None:
        """The name of a child that has exited on its own, if any."""
        for name, process in self._processes.items():
            if process.poll() is not None:
                return name
        return None

    def process_groups(self) -> list[int]:
        return [process.pid for process in self._processes.values()]

    def stop(self, grace: float = 10.0) -> None:
        """Stop every process group started here (serverless-offline's Python workers too),
        keeping the conversations first when asked to (keep_in)."""
        self._sweeps.set()
        for thread in (self._feeder, self._tap):
            if thread is not None:
                thread.stop()
        if self.keep_in is not None and self.table_names and self.failed_process() is None:
            try:
                save_data(self.dynamodb(), self.table_names, self.data_file)
            except Exception as error:  # never let saving stand in the way of stopping
                print(f"Could not keep the conversations: {error}", file=sys.stderr)
        for name in ("serverless-offline", "moto"):
            process = self._processes.pop(name, None)
            if process is not None:
                _stop_group(process, grace)
        if self._page_server is not None:
            self._page_server.shutdown()
            self._page_server.server_close()
            self._page_server = None

    # --- internals -------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], env: dict[str, str], output: IO[str] | None) -> None:
        # Each child leads its own process group, so stop() reaches its children too, and a
        # Ctrl-C in the terminal reaches only us: we stop the children in order. A signal we
        # cannot catch (SIGKILL, a test run's workers killed) would leave them running: each is
        # told to end when we do (die_with_parent).
        with self.spawn_guard():
            self._processes[name] = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )

    def _wait_for(self, ready: Any, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            failed = self.failed_process()
            if failed:
                log = self.moto_log.read_text(errors="replace")[-2000:] if failed == "moto" else ""
                raise StackError(f"{failed} exited while starting (exit code {self._processes[failed].returncode}).\n{log}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} was not ready after {timeout:.0f} s.")
            time.sleep(0.1)

    def _create_tables(self, config: dict[str, Any]) -> None:
        client = self.dynamodb().meta.client
        for logical_id, properties in table_resources(config).items():
            self.table_names[logical_id] = create_table(client, properties)

    def _create_events(self, config: dict[str, Any]) -> dict[str, str]:
        """The bus and its tap queue in moto, and the stream's feeder (not yet started); the
        parameters that point the functions at that bus. Nothing with --param events=off."""
        if str(config["custom"]["events"]["enabled"]).lower() == "off":
            return {}
        self.progress(f"Creating the event bus in moto; its events go to {self.events_file} (make events)")
        session = local_session(self.region)
        bus = local_events.bus_name(config["service"], STAGE)
        queue_url = local_events.create_bus_and_tap(
            session.client("events", endpoint_url=self.dynamodb_endpoint),
            self.sqs(),
            bus,
            local_events.tap_queue_name(config["service"], STAGE),
        )
        self._tap = local_events.Tap(self.sqs(), queue_url, self.events_file)
        self._tap.start()
        function = f"{config['service']}-{STAGE}-publishEvents"
        self._feeder = local_events.StreamFeeder(
            session.client("dynamodbstreams", endpoint_url=self.dynamodb_endpoint),
            local_events.stream_arn(self.dynamodb().meta.client, self.table_names["HistoryTable"]),
            f"http://localhost:{self.ports.lambda_}/2015-03-31/functions/{function}/invocations",
        )
        return {"eventBusName": bus}

    def _seed_secret(self, config: dict[str, Any]) -> None:
        """The development secret in moto's SSM, where the authorizer reads it: the one kept from
        the last run (keep_in), so that tokens and open pages survive a restart, else a fresh one."""
        self.secret_parameter = config["provider"]["environment"]["JWT_SECRET_PARAMETER"]
        self.jwt_secret = kept_secret(self.keep_in / SECRET_FILE) if self.keep_in is not None else secrets.token_urlsafe(48)
        ssm = local_session(self.region).client("ssm", endpoint_url=self.dynamodb_endpoint)
        ssm.put_parameter(Name=self.secret_parameter, Value=self.jwt_secret, Type="SecureString", Overwrite=True)

    def _create_user_pool(self) -> None:
        """A Cognito user pool in moto with an app client that signs in with a password and the
        users of COGNITO_USERS, so that the local stack takes identity-provider tokens too."""
        cognito = self.cognito()
        pool = cognito.create_user_pool(PoolName="serverless-websocket-local")["UserPool"]
        self.user_pool_id = pool["Id"]
        self.user_pool_client_id = cognito.create_user_pool_client(
            UserPoolId=self.user_pool_id, ClientName="chat-page", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
        )["UserPoolClient"]["ClientId"]
        for user, password in COGNITO_USERS.items():
            cognito.admin_create_user(UserPoolId=self.user_pool_id, Username=user, MessageAction="SUPPRESS")
            cognito.admin_set_user_password(UserPoolId=self.user_pool_id, Username=user, Password=password, Permanent=True)

    def cognito(self) -> Any:
        return local_session(self.region).client("cognito-idp", endpoint_url=self.dynamodb_endpoint)

    def cognito_issuer(self) -> dict[str, Any]:
        """The pool as TOKEN_ISSUERS names it: moto signs with AWS's issuer name, and serves the
        keys itself (plain HTTP on this machine)."""
        return {
            "issuer": f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}",
            "jwksUri": f"{self.dynamodb_endpoint}/{self.user_pool_id}/.well-known/jwks.json",
            "audience": [self.user_pool_client_id],
            "userClaim": "cognito:username",
        }

    def cognito_token(self, user: str) -> str:
        """The ID token `user` gets by signing in to the pool with their password."""
        answer = self.cognito().initiate_auth(
            ClientId=self.user_pool_client_id, AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": user, "PASSWORD": COGNITO_USERS[user]},
        )
        return str(answer["AuthenticationResult"]["IdToken"])

    def _schedule_sweeper(self, function_name: str, interval_text: str) -> None:
        """Invoke the sweeper through serverless-offline's Lambda endpoint (the Invoke API) every
        bucket (serverless.yml: rate(1 minute), one bucket a minute; 5 s in the end-to-end tests,
        which no schedule expression can say), in a thread of this process that stop() ends.
        serverless-offline's own run of the schedule is taken out (plugins/offline.js)."""
        interval = float(interval_text)
        url = f"http://localhost:{self.ports.lambda_}/2015-03-31/functions/{function_name}/invocations"

        def run() -> None:
            while not self._sweeps.wait(interval):
                try:
                    request = urllib.request.Request(url, data=b"{}", method="POST")
                    with urllib.request.urlopen(request, timeout=max(60.0, interval * 2)) as answer:
                        answer.read()
                    self.sweeps_run += 1
                except OSError:
                    continue  # stopping, or a run that failed: the next one makes up for it

        threading.Thread(target=run, name="sweeper-schedule", daemon=True).start()

    def _serve_page(self) -> None:
        """web/ as static files on loopback, in a thread of this process (stopped by stop())."""
        handler = functools.partial(_QuietFiles, directory=str(WEB_DIR))
        self._page_server = http.server.ThreadingHTTPServer(("localhost", self.ports.page), handler)
        threading.Thread(target=self._page_server.serve_forever, name="chat-page", daemon=True).start()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    """Static files without a log line per request in the terminal the function logs use."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript; charset=utf-8", ".html": "text/html; charset=utf-8"}

    def log_message(self, format: str, *args: Any) -> None:
        pass


# The local Cognito user pool's users and their passwords (printed by `make offline`).
COGNITO_USERS = {"alice": "Alice-local-1", "bob": "Bob-local-1"}

# What `make offline` keeps in .offline/ from one run to the next.
SECRET_FILE = "jwt-secret"
DATA_FILE = "conversations-{port}.json"
# The tables whose items outlive a run: every message and conversation. Connections, members,
# presence and rate-limit buckets belong to connections, which do not survive a restart.
KEPT_TABLES = ("HistoryTable", "ConversationsTable")


def kept_secret(path: Path) -> str:
    """The token secret kept in `path` (readable by you alone), made on first use."""
    if path.is_file():
        text = path.read_text().strip()
        if len(text) >= 32:
            return text
    secret = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


def save_data(dynamodb: Any, table_names: dict[str, str], path: Path) -> int:
    """Every item of the kept tables, as DynamoDB JSON, into `path` (written whole, then moved
    into place, so a crash never leaves half a file). Returns how many."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    document: dict[str, list[dict[str, Any]]] = {}
    for logical_id in KEPT_TABLES:
        table = dynamodb.Table(table_names[logical_id])
        items, kwargs = [], {}
        while True:
            page = table.scan(**kwargs)
            items += [{key: serializer.serialize(value) for key, value in item.items()} for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # A channel's count of users online belongs to presence, which starts empty.
        document[logical_id] = [item for item in items if item.get("sk", {}).get("S") != "presence"]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document))
    partial.replace(path)
    return sum(len(items) for items in document.values())


def restore_data(dynamodb: Any, table_names: dict[str, str], path: Path) -> int:
    """Put back what save_data kept (nothing if there is no file). Returns how many items."""
    from boto3.dynamodb.types import TypeDeserializer

    if not path.is_file():
        return 0
    deserializer = TypeDeserializer()
    document = json.loads(path.read_text())
    restored = 0
    for logical_id in KEPT_TABLES:
        with dynamodb.Table(table_names[logical_id]).batch_writer() as batch:
            for item in document.get(logical_id, []):
                batch.put_item(Item={key: deserializer.deserialize(value) for key, value in item.items()})
                restored += 1
    return restored


def local_session(region: str) -> Any:
    """A boto3 session that can only talk to moto: fake keys, no profile."""
    import boto3

    return boto3.Session(aws_access_key_id=FAKE_ACCESS_KEY, aws_secret_access_key=FAKE_SECRET_KEY, region_name=region)


def mint_token(secret: str, user: str, hours: float = DEV_TOKEN_HOURS, **claims: Any) -> str:
    """An HS256 JWT for `user`, the kind the $connect authorizer verifies, with any other claims
    (`channels`, `moderates`)."""
    import jwt

    return jwt.encode({"sub": user, "exp": int(time.time() + hours * 3600), **claims}, secret, algorithm="HS256")


@dataclass(frozen=True)
class StackProcess:
    """One process of the stack, as /proc shows it."""

    pid: int
    argv: tuple[bytes, ...]
    rss: int | None  # resident bytes; None for a process that holds no memory (a zombie)

    @property
    def handler(self) -> str | None:
        """The function a serverless-offline Python worker serves (invoke.py's last argument:
        `send_message`, ...); None for any other process. Node starts the worker through a shell,
        whose one argument holds the whole command: that shell is not the worker."""
        if any(arg.endswith(b"invoke.py") for arg in self.argv[:-1]):
            return self.argv[-1].decode()
        return None


def stack_processes_now(process_groups: list[int]) -> list[StackProcess]:
    """Every process in the given process groups (Linux /proc): the one place that reads them."""
    groups, found = set(process_groups), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) not in groups:
                continue
            argv = tuple((entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0"))
            rss = next(
                (int(line.split()[1]) * 1024 for line in (entry / "status").read_text().splitlines() if line.startswith("VmRSS:")),
                None,
            )
        except (OSError, ValueError, IndexError):
            continue
        found.append(StackProcess(int(entry.name), argv, rss))
    return found


def stack_rss_bytes(process_groups: list[int]) -> int:
    """Resident memory of every process in the given process groups (Linux /proc)."""
    return sum(process.rss or 0 for process in stack_processes_now(process_groups))


# prctl(2): PR_SET_PDEATHSIG, the signal a process gets when the thread that started it ends.
PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """For Popen's preexec_fn (Linux): the child gets SIGTERM when this process ends, however it
    ends (moto and serverless-offline stop on SIGTERM, serverless-offline with its Python workers).
    libc is loaded here, before the fork: the child only makes the call. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # we ended before the call: nothing would tell the child
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, it is just not ours to signal
    return True


def _stop_group(process: subprocess.Popen, grace: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while group_alive(process.pid) and time.monotonic() < deadline:
            process.poll()
            time.sleep(0.05)
        if not group_alive(process.pid):
            break
    process.wait()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
