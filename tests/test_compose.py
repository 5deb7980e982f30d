"""Static checks of the container deployment: Dockerfile and docker-compose.yml.

There is no Docker engine on the development and CI machines, so nothing is built or started
here. Instead:

1. docker-compose.yml is validated against the official Compose Specification JSON schema,
   the copy vendored inside check-jsonschema (``--builtin-schema vendor.compose-spec``: offline,
   pinned with the package);
2. the rules the schema cannot express are checked explicitly (depends_on targets, health
   checks, ``${VAR}`` defaults, the shared environment vs ``jiesu.config.Settings``, port
   collisions, pinned images, entry points that exist in the repository and in the image).

Each explicit rule is a function returning a list of problems; the ``*_catches_*`` tests feed
deliberately broken copies of the real file to prove that every rule can fail.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from jiesu.ops import temporal_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

APP_SERVICES = ("bootstrap", "worker", "api", "mail")
MUST_HAVE_HEALTHCHECK = ("postgres", "temporal", "api")
ENV_ANCHOR = "x-jiesu-env"

# ${NAME:-default} / ${NAME-default}: the only interpolations allowed (a default everywhere).
_INTERPOLATION = re.compile(r"\$(\$|\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*|)")
_WITH_DEFAULT = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*:?-[^}]*\}$")
_DEFAULT_SUB = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}")


# --------------------------------------------------------------------------- loading helpers


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def resolve(value: Any) -> str:
    """The string Compose would see with no variable set: every ${X:-d} becomes d."""
    return _DEFAULT_SUB.sub(lambda m: m.group(1), str(value)).replace("$$", "$")


def strings_in(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every (path, string) in a YAML tree, keys included."""
    if isinstance(node, dict):
        out: list[tuple[str, str]] = []
        for k, v in node.items():
            out.append((f"{path}/{k}(key)", str(k)))
            out.extend(strings_in(v, f"{path}/{k}"))
        return out
    if isinstance(node, list):
        return [s for i, v in enumerate(node) for s in strings_in(v, f"{path}[{i}]")]
    return [(path, node)] if isinstance(node, str) else []


def as_argv(command: Any) -> list[str]:
    return [str(c) for c in command] if isinstance(command, list) else str(command).split()


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    return instructions[last_from:]


def dockerfile_cmd(instructions: list[tuple[str, str]]) -> list[str]:
    cmds = [args for k, args in final_stage(instructions) if k == "CMD"]
    assert cmds, "the Dockerfile's final stage has no CMD"
    assert cmds[-1].startswith("["), "CMD must be exec form (JSON array) so signals reach it"
    return json.loads(cmds[-1])


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def settings_aliases() -> set[str]:
    from jiesu.config import Settings

    return {f.alias for f in Settings.model_fields.values() if f.alias}


# --------------------------------------------------------------------------- rules


def problems_image_or_build(doc: dict[str, Any]) -> list[str]:
    return [
        f"service {name!r} has neither image nor build"
        for name, svc in doc["services"].items()
        if not svc.get("image") and not svc.get("build")
    ]


def problems_depends_on(doc: dict[str, Any]) -> list[str]:
    services = doc["services"]
    out = []
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for target, spec in deps.items():
            if target not in services:
                out.append(f"{name} depends on unknown service {target!r}")
                continue
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy" and not services[target].get("healthcheck"):
                out.append(f"{name} waits for {target} to be healthy, but it has no healthcheck")
            if condition == "service_completed_successfully" and services[target].get(
                "restart", "no"
            ) not in ("no", "on-failure"):
                out.append(f"{name} waits for {target} to complete, but it restarts forever")
    return out


def problems_healthchecks(doc: dict[str, Any]) -> list[str]:
    out = []
    for name in MUST_HAVE_HEALTHCHECK:
        check = doc["services"].get(name, {}).get("healthcheck") or {}
        test = check.get("test")
        if check.get("disable") or not test or test == ["NONE"]:
            out.append(f"service {name!r} has no healthcheck")
    return out


def problems_interpolation(doc: dict[str, Any]) -> list[str]:
    out = []
    for path, text in strings_in(doc):
        for match in _INTERPOLATION.finditer(text):
            token = match.group(1)
            if token == "$":
                continue  # $$ is Compose's escape for a literal $
            if not _WITH_DEFAULT.match(token):
                out.append(f"{path}: ${token} has no default (use ${{NAME:-default}})")
    return out


def problems_environment(doc: dict[str, Any]) -> list[str]:
    anchor = doc.get(ENV_ANCHOR)
    if not isinstance(anchor, dict):
        return [f"no {ENV_ANCHOR} mapping"]
    out = [f"{ENV_ANCHOR} lacks {a}" for a in sorted(settings_aliases() - anchor.keys())]
    for name in APP_SERVICES:
        env = doc["services"].get(name, {}).get("environment") or {}
        if isinstance(env, list):
            env = dict(item.partition("=")[::2] for item in env)
        for key, value in anchor.items():
            if str(env.get(key)) != str(value):
                out.append(f"service {name!r}: {key} differs from {ENV_ANCHOR} (or is missing)")
    if out:
        return out

    # With every variable unset, the values must be accepted by the application's Settings,
    # and the hosts they name must be services of this file.
    from jiesu.config import Settings

    resolved = {k: resolve(v) for k, v in anchor.items()}
    try:
        Settings(**resolved)
    except Exception as exc:  # pydantic's ValidationError, kept generic on purpose
        out.append(f"{ENV_ANCHOR} is rejected by jiesu.config.Settings: {exc}")
    temporal_host = resolved.get("TEMPORAL_ADDRESS", "").rpartition(":")[0]
    db_host = urlsplit(resolved.get("DATABASE_URL", "")).hostname
    for var, host in (("TEMPORAL_ADDRESS", temporal_host), ("DATABASE_URL", db_host)):
        if host not in doc["services"]:
            out.append(f"{var} points at {host!r}, which is not a service")
    return out


def _published(port: Any) -> tuple[str, str, str] | None:
    """(host_ip, published port, protocol) of one ports entry, None if not published."""
    if isinstance(port, dict):
        published = port.get("published")
        if published is None:
            return None
        return (
            resolve(port.get("host_ip", "0.0.0.0")),
            resolve(published),
            port.get("protocol", "tcp"),
        )
    text, _, proto = resolve(port).partition("/")
    parts = text.rsplit(":", 2)
    if len(parts) == 1:
        return None  # container port only: Docker picks a free host port
    host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
    return (host_ip or "0.0.0.0", parts[-2], proto or "tcp")


def problems_ports(doc: dict[str, Any]) -> list[str]:
    out = []
    seen: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name, svc in doc["services"].items():
        for port in svc.get("ports") or []:
            pub = _published(port)
            if pub is None:
                continue
            ip, number, proto = pub
            for other_ip, other in seen.get((number, proto), []):
                if "0.0.0.0" in (ip, other_ip) or ip == other_ip:
                    out.append(f"host port {number}/{proto}: {name} collides with {other}")
            seen.setdefault((number, proto), []).append((ip, name))
    # A scaled service can have neither a fixed host port nor a fixed container name.
    worker = doc["services"].get("worker", {})
    if worker.get("container_name"):
        out.append("worker has a container_name, so it cannot scale")
    if any(_published(p) for p in worker.get("ports") or []):
        out.append("worker publishes a host port, so it cannot scale")
    return out


_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[?::1\]?|localhost)$")


def problems_exposure(doc: dict[str, Any]) -> list[str]:
    """Nothing is published beyond the host's loopback interface: the API, Temporal and its
    unauthenticated Web UI are reached from other machines only through a proxy on the host.
    (A bare container port is published on every interface, on a random host port.)"""
    out = []
    for name, svc in doc["services"].items():
        if svc.get("network_mode") == "host":
            out.append(f"{name} uses the host's network: every port it opens is public")
        for port in svc.get("ports") or []:
            pub = _published(port)
            if pub is None or not _LOOPBACK.match(pub[0]):
                out.append(f"{name} publishes {port!r} beyond the loopback interface")
    return out


def problems_demo_data(doc: dict[str, Any]) -> list[str]:
    """The topology starts with no demo data and no demo API keys (they are public): with
    every variable unset, the bootstrap command, as the real CLI parses it, loads no demo."""
    from jiesu.config import Settings
    from jiesu.ops.cli import _build_parser, wants_demo

    out = []
    for name in APP_SERVICES:
        svc = doc["services"].get(name, {})
        env = {k: resolve(v) for k, v in (svc.get("environment") or {}).items()}
        if "--demo" in as_argv(svc.get("command", [])):
            out.append(f"service {name!r} passes --demo")
        if Settings(**env).demo_data:
            out.append(f"service {name!r} has JIESU_DEMO_DATA on by default")
    bootstrap = doc["services"].get("bootstrap", {})
    argv = as_argv(bootstrap.get("command", []))
    if argv[:3] != ["python", "-m", "jiesu.ops.cli"]:
        return [*out, f"bootstrap runs {argv}, not the jiesu CLI"]
    env = {k: resolve(v) for k, v in (bootstrap.get("environment") or {}).items()}
    if wants_demo(_build_parser().parse_args(argv[3:]), Settings(**env)):
        out.append("the bootstrap service would load the demo data")
    return out


# The variables the outbox's sender and the inbound mail's automatic-reply mailer read from the
# environment themselves (not through jiesu.config.Settings): env.get("JIESU_…") in their code.
_SENDER_MODULES = ("jiesu/notify/outbox.py", "jiesu/notify/mail.py")
_ENV_READ = re.compile(r'env\.get\("(JIESU_[A-Z0-9_]+)"')


def problems_notice_senders(doc: dict[str, Any]) -> list[str]:
    """The app services can be given every variable the notification sender and the mailer
    read (JIESU_NOTIFY_*, JIESU_SMTP_*, JIESU_MAIL_REPLY): Compose passes a container only the
    variables its file names, so one missing there cannot be set at all (JIESU_NOTIFY_SENDER=smtp,
    or JIESU_MAIL_REPLY=smtp, which needs JIESU_SMTP_HOST). And the log sender's file is where the
    image's user may write: its default, .data/notifications.log, is under the WORKDIR, which
    belongs to root (Dockerfile), and every staff notice would fail there."""
    anchor = doc.get(ENV_ANCHOR)
    if not isinstance(anchor, dict):
        return [f"no {ENV_ANCHOR} mapping"]
    read = sorted({v for m in _SENDER_MODULES for v in _ENV_READ.findall((ROOT / m).read_text())})
    out = [f"{ENV_ANCHOR} lacks {v}, which {' or '.join(_SENDER_MODULES)} reads" for v in read
           if v not in anchor]
    workdir = next((args for k, args in final_stage(dockerfile_instructions(
        DOCKERFILE.read_text())) if k == "WORKDIR"), "/")
    log = resolve(anchor.get("JIESU_NOTIFY_LOG", ""))
    if not log.startswith("/") or log.startswith(workdir.rstrip("/") + "/"):
        out.append(f"JIESU_NOTIFY_LOG {log!r} is not a path the image's user may write "
                   f"(relative, or under the root-owned WORKDIR {workdir})")
    return out


def problems_images_pinned(doc: dict[str, Any]) -> list[str]:
    out = []
    for name, svc in doc["services"].items():
        image = resolve(svc.get("image", ""))
        if not image:
            continue
        last = image.split("@")[0].rsplit("/", 1)[-1]
        tag = last.partition(":")[2]
        if "@sha256:" not in image and (not tag or tag == "latest"):
            out.append(f"service {name!r}: image {image!r} is not pinned to a tag")
    return out


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _installed_top_levels() -> set[str]:
    tool = pyproject()["tool"]["setuptools"]
    return {p.split(".")[0] for p in tool.get("packages", [])} | set(tool.get("py-modules", []))


def problems_entry_point(argv: list[str], where: str) -> list[str]:
    """The module or script a command starts must exist in the repo and be installed."""
    if not argv:
        return [f"{where}: empty command"]
    exe = Path(argv[0]).name
    if exe.startswith("python"):
        if len(argv) >= 3 and argv[1] == "-m":
            module, kind = argv[2], "module"
        elif len(argv) >= 2 and argv[1].endswith(".py"):
            module, kind = argv[1].removesuffix(".py").replace("/", "."), "script"
        else:
            return [f"{where}: cannot tell what {argv} runs"]
    elif exe == "uvicorn":
        targets = [a for a in argv[1:] if ":" in a and not a.startswith("-")]
        if not targets:
            return [f"{where}: uvicorn without an app target"]
        module, kind = targets[0].partition(":")[0], "app module"
    else:
        return [f"{where}: unexpected executable {argv[0]!r}"]
    out = []
    path = _module_file(module)
    if path is None:
        out.append(f"{where}: {kind} {module!r} does not exist in the repository")
    elif kind == "app module":
        attr = re.escape(targets[0].partition(":")[2])
        if not re.search(rf"^(async def |def |class )?{attr}\b\s*[:=(]", path.read_text(), re.M):
            out.append(f"{where}: {module!r} defines no top-level {targets[0]!r}")
    elif path.name == "__init__.py":
        if not (path.parent / "__main__.py").is_file():
            out.append(f"{where}: package {module!r} has no __main__.py to run")
    elif '__name__ == "__main__"' not in path.read_text():
        out.append(f'{where}: {module!r} has no `if __name__ == "__main__":` block, runs nothing')
    if module.split(".")[0] not in _installed_top_levels():
        out.append(f"{where}: {module!r} is not packaged by pyproject.toml ([tool.setuptools])")
    return out


def problems_commands(doc: dict[str, Any], instructions: list[tuple[str, str]]) -> list[str]:
    out = problems_entry_point(dockerfile_cmd(instructions), "Dockerfile CMD")
    for name in APP_SERVICES:
        svc = doc["services"].get(name)
        if svc is None:
            out.append(f"no {name!r} service")
            continue
        argv = as_argv(svc["command"]) if "command" in svc else dockerfile_cmd(instructions)
        out.extend(problems_entry_point(argv, f"service {name!r}"))
    return out


def problems_api_port(doc: dict[str, Any], instructions: list[tuple[str, str]]) -> list[str]:
    """uvicorn's --host/--port, JIESU_API_PORT, the ports mapping and the healthcheck agree."""
    api = doc["services"].get("api", {})
    argv = as_argv(api["command"]) if "command" in api else dockerfile_cmd(instructions)
    out = []
    for argv_, where in ((argv, "api command"), (dockerfile_cmd(instructions), "Dockerfile CMD")):
        opts = dict(itertools.pairwise(argv_))
        if opts.get("--host") != "0.0.0.0":
            out.append(f"{where}: uvicorn must listen on 0.0.0.0 inside a container")
        port = opts.get("--port", "8000")
        if port != resolve((api.get("environment") or {}).get("JIESU_API_PORT", "")):
            out.append(f"{where}: --port {port} differs from JIESU_API_PORT")
    port = dict(itertools.pairwise(argv)).get("--port", "8000")
    targets = [resolve(p).partition("/")[0].rsplit(":", 1)[-1] for p in api.get("ports") or []]
    if port not in targets:
        out.append(f"api publishes {targets}, not the port uvicorn listens on ({port})")
    check = " ".join(as_argv((api.get("healthcheck") or {}).get("test", [])))
    if f"127.0.0.1:{port}/healthz" not in check and f"localhost:{port}/healthz" not in check:
        out.append(f"api healthcheck does not probe /healthz on port {port}")
    return out


def problems_dockerfile(instructions: list[tuple[str, str]]) -> list[str]:
    out = []
    froms = [args.split()[0] for k, args in instructions if k == "FROM"]
    if not froms or not froms[-1].startswith("python:3.11-slim"):
        out.append(f"final image is based on {froms[-1:]} instead of python:3.11-slim")
    stage = final_stage(instructions)
    users = [args for k, args in stage if k == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        out.append("the final stage runs as root (no USER, or USER root)")
    runs = " ".join(args for k, args in instructions if k == "RUN")
    if "pip install" not in runs:
        out.append("no RUN pip install")
    if re.search(r"\[[^\]]*dev[^\]]*\]", runs):
        out.append("the image installs the [dev] extra")
    copied: set[str] = set()
    for k, args in stage:
        if k not in ("COPY", "ADD"):
            continue
        if "--from" in args:
            continue  # copied from another stage, not from the repository
        parts = [p for p in args.split() if not p.startswith("--")]
        for src in parts[:-1]:
            copied.add(src.rstrip("/").removeprefix("./"))
            if not list(ROOT.glob(src.rstrip("/"))):
                out.append(f"Dockerfile copies {src}, which does not exist in the repository")
    envs = " ".join(args for k, args in stage if k == "ENV")
    if "JIESU_NOTIFY_LOG=/home/jiesu/" not in envs:
        out.append("JIESU_NOTIFY_LOG is left at .data/ under the root-owned /app: the log "
                   "sender cannot write there, every staff notice fails")  # fmt: skip
    project = pyproject()
    tool = project["tool"]["setuptools"]
    needed = {"pyproject.toml"} | {p.split(".")[0] for p in tool.get("packages", [])}
    needed |= {m + ".py" for m in tool.get("py-modules", [])}
    readme = project["project"].get("readme")
    if isinstance(readme, str):
        needed.add(readme)
    out.extend(
        f"Dockerfile does not copy {n}, which `pip install .` needs"
        for n in sorted(needed - copied)
    )
    return out


# --------------------------------------------------------------------------- the real files


def test_compose_file_matches_the_compose_specification() -> None:
    import check_jsonschema  # noqa: F401  (a dev dependency: fail loudly if it is missing)

    result = run_check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "rule",
    [
        problems_image_or_build,
        problems_depends_on,
        problems_healthchecks,
        problems_interpolation,
        problems_environment,
        problems_ports,
        problems_images_pinned,
        problems_exposure,
        problems_demo_data,
        problems_notice_senders,
    ],
    ids=lambda f: f.__name__.removeprefix("problems_"),
)
def test_compose_rule(rule) -> None:
    assert rule(load_compose()) == []


def test_compose_has_the_expected_services() -> None:
    expected = {"postgres", "temporal", "temporal-ui", "bootstrap", "worker", "api", "mail"}
    assert expected <= load_compose()["services"].keys()


def test_dockerfile() -> None:
    assert problems_dockerfile(dockerfile_instructions(DOCKERFILE.read_text())) == []


def test_entry_points_exist() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    assert problems_commands(load_compose(), instructions) == []


def test_api_port_is_consistent() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    assert problems_api_port(load_compose(), instructions) == []


# --------------------------------------------------------------------------- the rules can fail


def run_check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            "--color",
            "never",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "broken",
    [
        {"services": {"api": {"image": "x:1", "depends_on": {"db": {"condition": "maybe"}}}}},
        {"services": {"api": {"image": "x:1", "healthcheck": {"test": 42}}}},
        {"services": {"api": {"imagee": "x:1"}}},
        {"services": {"api": {"image": "x:1", "ports": [{"target": 80, "publish": 8000}]}}},
        {"servics": {"api": {"image": "x:1"}}},
    ],
    ids=["bad-condition", "bad-healthcheck", "unknown-key", "bad-port", "unknown-top-level"],
)
def test_schema_check_catches_invalid_files(tmp_path: Path, broken: dict[str, Any]) -> None:
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert run_check_jsonschema(path).returncode != 0


def _break(doc: dict[str, Any], how: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    s = doc["services"]
    if how == "no-image":
        s["postgres"].pop("image")
    elif how == "unknown-dependency":
        s["api"]["depends_on"] = {"redis": {"condition": "service_started"}}
    elif how == "healthy-without-healthcheck":
        s["temporal"].pop("healthcheck")
    elif how == "complete-but-restarts":
        s["bootstrap"]["restart"] = "always"
    elif how == "no-default":
        s["postgres"]["environment"]["POSTGRES_PASSWORD"] = "${POSTGRES_PASSWORD}"
    elif how == "bare-variable":
        s["postgres"]["environment"]["POSTGRES_PASSWORD"] = "$POSTGRES_PASSWORD"
    elif how == "env-missing-setting":
        doc[ENV_ANCHOR].pop("JIESU_TIMEZONE")  # the anchor is shared, so every service loses it
    elif how == "env-service-differs":
        s["worker"]["environment"] = {**s["worker"]["environment"], "JIESU_TASK_QUEUE": "x"}
    elif how == "env-invalid-value":
        doc[ENV_ANCHOR]["JIESU_RATING_WINDOW_HOURS"] = "${JIESU_RATING_WINDOW_HOURS:--1}"
    elif how == "env-unknown-host":
        doc[ENV_ANCHOR]["DATABASE_URL"] = "postgresql://postgres@db:5432/jiesu"
    elif how == "port-collision":
        s["temporal-ui"]["ports"] = ["8000:8080"]
    elif how == "worker-container-name":
        s["worker"]["container_name"] = "jiesu-worker"
    elif how == "latest-image":
        s["temporal-ui"]["image"] = "temporalio/ui:latest"
    elif how == "untagged-image":
        s["postgres"]["image"] = "postgres"
    elif how == "missing-script":
        s["worker"]["command"] = ["python", "no_such_worker.py"]
    elif how == "unpackaged-module":
        s["bootstrap"]["command"] = ["python", "-m", "tests.test_compose"]
    elif how == "not-a-main":
        s["worker"]["command"] = ["python", "-m", "jiesu.config"]
    elif how == "no-such-app":
        s["api"]["command"] = ["uvicorn", "api.main:application", "--host", "0.0.0.0"]
    elif how == "api-wrong-port":
        s["api"]["ports"] = ["8000:9000"]
    elif how == "api-on-all-interfaces":
        s["api"]["ports"] = ["${JIESU_API_PUBLISHED_PORT:-8000}:8000"]
    elif how == "ui-random-port":
        s["temporal-ui"]["ports"] = ["8080"]
    elif how == "long-syntax-public":
        s["temporal"]["ports"] = [{"target": 7233, "published": 7233, "host_ip": "0.0.0.0"}]
    elif how == "demo-by-default":
        doc[ENV_ANCHOR]["JIESU_DEMO_DATA"] = "${JIESU_DEMO_DATA:-1}"
        for name in APP_SERVICES:
            s[name]["environment"] = doc[ENV_ANCHOR]
    elif how == "sender-variable-missing":
        doc[ENV_ANCHOR].pop("JIESU_SMTP_HOST", None)
    elif how == "notify-log-in-workdir":
        doc[ENV_ANCHOR]["JIESU_NOTIFY_LOG"] = "${JIESU_NOTIFY_LOG:-.data/notifications.log}"
    elif how == "demo-flag":
        s["bootstrap"]["command"] = ["python", "-m", "jiesu.ops.cli", "bootstrap", "--demo"]
    else:
        raise AssertionError(how)
    return doc


@pytest.mark.parametrize(
    ("how", "rule"),
    [
        ("no-image", problems_image_or_build),
        ("unknown-dependency", problems_depends_on),
        ("healthy-without-healthcheck", problems_depends_on),
        ("healthy-without-healthcheck", problems_healthchecks),
        ("complete-but-restarts", problems_depends_on),
        ("no-default", problems_interpolation),
        ("bare-variable", problems_interpolation),
        ("env-missing-setting", problems_environment),
        ("env-service-differs", problems_environment),
        ("env-invalid-value", problems_environment),
        ("env-unknown-host", problems_environment),
        ("port-collision", problems_ports),
        ("worker-container-name", problems_ports),
        ("latest-image", problems_images_pinned),
        ("untagged-image", problems_images_pinned),
        ("missing-script", "commands"),
        ("unpackaged-module", "commands"),
        ("not-a-main", "commands"),
        ("no-such-app", "commands"),
        ("api-wrong-port", "api_port"),
        ("api-on-all-interfaces", problems_exposure),
        ("ui-random-port", problems_exposure),
        ("long-syntax-public", problems_exposure),
        ("demo-by-default", problems_demo_data),
        ("demo-flag", problems_demo_data),
        ("sender-variable-missing", problems_notice_senders),
        ("notify-log-in-workdir", problems_notice_senders),
    ],
)
def test_rule_catches_a_broken_compose_file(how: str, rule) -> None:
    broken = _break(load_compose(), how)
    if rule == "commands":
        problems = problems_commands(broken, dockerfile_instructions(DOCKERFILE.read_text()))
    elif rule == "api_port":
        problems = problems_api_port(broken, dockerfile_instructions(DOCKERFILE.read_text()))
    else:
        problems = rule(broken)
    assert problems, f"{how} went unnoticed"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("USER jiesu", "USER root"), "runs as root"),
        (("FROM python:3.11-slim", "FROM python:3.12"), "instead of python:3.11-slim"),
        (("pip install .", "pip install '.[dev]'"), "[dev] extra"),
        (("COPY worker.py ./", ""), "does not copy worker.py"),
        (("COPY api/ api/", "COPY api/ nowhere/ api/"), "nowhere/"),
        (("ENV JIESU_NOTIFY_LOG=/home/jiesu/notifications.log", ""), "JIESU_NOTIFY_LOG"),
    ],
    ids=["root", "base-image", "dev-extra", "missing-copy", "copy-of-nothing", "notify-log"],
)
def test_dockerfile_rule_catches_a_broken_dockerfile(edit: tuple[str, str], expected: str) -> None:
    text = DOCKERFILE.read_text()
    assert edit[0] in text, f"the test's anchor {edit[0]!r} is no longer in the Dockerfile"
    problems = problems_dockerfile(dockerfile_instructions(text.replace(edit[0], edit[1])))
    assert any(expected in p for p in problems), problems


# --------------------------------------------------------------------------- observability
#
# Prometheus and Grafana (docs/observability.md): their files exist and parse, Prometheus
# scrapes the ports the API and the workers serve metrics on, Grafana's datasource is that
# Prometheus, and every dashboard panel uses it. That the dashboard's queries name metrics the
# processes really export is checked against live scrapes in tests/test_metrics.py.

DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan",
}  # fmt: skip


def bind_mounts(svc: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path in the repository, container path) of a service's ./ bind mounts."""
    out = []
    for volume in svc.get("volumes") or []:
        source, _, rest = str(volume).partition(":")
        if source.startswith("./"):
            out.append((ROOT / source, rest.split(":")[0]))
    return out


def _container_file(svc: dict[str, Any], target: str) -> Path | None:
    """The repository file a service sees at ``target`` through its bind mounts."""
    for host, inside in bind_mounts(svc):
        if target == inside:
            return host
        if target.startswith(inside.rstrip("/") + "/"):
            return host / target[len(inside.rstrip("/")) + 1 :]
    return None


def _port_of(anchor: dict[str, Any], variable: str) -> str:
    return resolve(anchor.get(variable, "")).rpartition(":")[2]


def problems_observability(doc: dict[str, Any]) -> list[str]:
    services = doc["services"]
    missing = [n for n in ("prometheus", "grafana") if n not in services]
    if missing:
        return [f"no {n} service" for n in missing]
    out = [
        f"{name} mounts {host.relative_to(ROOT)}, which does not exist"
        for name, svc in services.items()
        for host, _ in bind_mounts(svc)
        if not host.exists()
    ]
    if out:
        return out
    out += _prometheus_problems(doc)
    out += _grafana_problems(doc)
    return out


def _prometheus_problems(doc: dict[str, Any]) -> list[str]:
    services, anchor = doc["services"], doc.get(ENV_ANCHOR) or {}
    prometheus = services["prometheus"]
    config_path = next(
        (a.split("=", 1)[1] for a in as_argv(prometheus.get("command", []))
         if a.startswith("--config.file=")), "/etc/prometheus/prometheus.yml",
    )  # fmt: skip
    config_file = _container_file(prometheus, config_path)
    if config_file is None or not config_file.is_file():
        return [f"prometheus reads {config_path}, which no bind mount provides"]
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    targets: dict[str, set[str]] = {}
    for job in config.get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = str(target).rpartition(":")
                targets.setdefault(host, set()).add(port)
        for dns in job.get("dns_sd_configs") or []:
            for host in dns.get("names") or []:
                targets.setdefault(host, set()).add(str(dns.get("port")))
    out = [f"prometheus scrapes {h}, which is not a service" for h in targets if h not in services]
    wanted = {"api": "JIESU_API_METRICS_ADDRESS", "worker": "JIESU_WORKER_METRICS_ADDRESS"}
    for service, variable in wanted.items():
        port = _port_of(anchor, variable)
        if not port:
            out.append(f"{variable} is not set: {service} serves no metrics")
        elif port not in targets.get(service, set()):
            out.append(f"prometheus does not scrape {service}:{port} ({variable})")
    return out


def _grafana_problems(doc: dict[str, Any]) -> list[str]:
    grafana = doc["services"]["grafana"]
    provisioning = _container_file(grafana, "/etc/grafana/provisioning")
    if provisioning is None:
        return ["grafana has no provisioning mounted at /etc/grafana/provisioning"]
    out: list[str] = []
    uids = set()
    for path in sorted((provisioning / "datasources").glob("*.yml")):
        for source in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources") or []:
            uids.add(source.get("uid"))
            host = urlsplit(source.get("url", "")).hostname
            if host not in doc["services"]:
                out.append(f"datasource {source.get('name')} points at {host}, not a service")
    dashboards: list[Path] = []
    for path in sorted((provisioning / "dashboards").glob("*.yml")):
        for provider in yaml.safe_load(path.read_text(encoding="utf-8")).get("providers") or []:
            folder = _container_file(grafana, provider.get("options", {}).get("path", ""))
            if folder is None or not folder.is_dir():
                out.append(f"dashboard provider {provider.get('name')} reads an unmounted path")
            else:
                dashboards += sorted(folder.glob("*.json"))
    if not dashboards:
        out.append("no dashboard is provisioned")
    for path in dashboards:
        for panel in _panels(json.loads(path.read_text(encoding="utf-8"))):
            uid = (panel.get("datasource") or {}).get("uid")
            if uid not in uids:
                out.append(f"{path.name}: panel {panel.get('title')!r} uses datasource {uid}")
            if not all(t.get("expr") for t in panel.get("targets") or [None]):
                out.append(f"{path.name}: panel {panel.get('title')!r} has no query")
    return out


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            out.extend(panel.get("panels") or [])
        else:
            out.append(panel)
    return out


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, grouping labels, ranges,
    strings, functions and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)\b(?!\s*\()", text)
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def dashboard_metric_names() -> set[str]:
    return {
        name
        for path in sorted(DASHBOARDS.glob("*.json"))
        for panel in _panels(json.loads(path.read_text(encoding="utf-8")))
        for target in panel.get("targets") or []
        for name in promql_metric_names(target.get("expr", ""))
    }


def test_observability_services_and_files() -> None:
    assert problems_observability(load_compose()) == []
    names = dashboard_metric_names()
    assert {"jiesu_api_requests_total", "jiesu_open_cases"} <= names, names
    assert "status" not in names and "le" not in names and "rate" not in names, names


def test_promql_metric_names() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, handler) (rate('
            'jiesu_api_request_duration_seconds_bucket{status=~"5.."}[5m]))) / up')
    assert promql_metric_names(expr) == {"jiesu_api_request_duration_seconds_bucket", "up"}


@pytest.mark.parametrize(
    "how", ["no-grafana", "missing-file", "wrong-api-port", "no-worker-metrics", "bad-datasource"]
)
def test_observability_rule_catches(how: str, tmp_path: Path) -> None:
    doc = copy.deepcopy(load_compose())
    s = doc["services"]
    if how == "no-grafana":
        s.pop("grafana")
    elif how == "missing-file":
        s["prometheus"]["volumes"][0] = "./deploy/prometheus/nope.yml:/etc/prometheus/p.yml:ro"
    elif how == "wrong-api-port":
        doc[ENV_ANCHOR]["JIESU_API_METRICS_ADDRESS"] = "0.0.0.0:9999"
    elif how == "no-worker-metrics":
        doc[ENV_ANCHOR]["JIESU_WORKER_METRICS_ADDRESS"] = ""
    elif how == "bad-datasource":
        provisioning = tmp_path / "provisioning"
        for sub in ("datasources", "dashboards"):
            (provisioning / sub).mkdir(parents=True)
        (provisioning / "datasources" / "p.yml").write_text(
            "datasources: [{name: P, uid: other, url: 'http://prometheus:9090'}]"
        )
        (provisioning / "dashboards" / "d.yml").write_text(
            "providers: [{name: d, options: {path: /etc/grafana/dashboards}}]"
        )
        mounted = os.path.relpath(provisioning, ROOT)
        s["grafana"]["volumes"][0] = f"./{mounted}:/etc/grafana/provisioning:ro"
    assert problems_observability(doc), f"{how} went unnoticed"


def test_compose_server_has_the_dev_servers_settings() -> None:
    with (ROOT / "deploy/temporal/dynamicconfig.yaml").open() as f:
        compose = {key: values[0]["value"] for key, values in yaml.safe_load(f).items()}
    assert compose == temporal_settings.SETTINGS
    with COMPOSE_FILE.open() as f:
        temporal = yaml.safe_load(f)["services"]["temporal"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in temporal["volumes"]}
    path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert mounted[path] == "./deploy/temporal/dynamicconfig.yaml"
