"""deploy/deploy.sh's control flow: successors ready before predecessors go, and every failure rolls back to the last
good release, whose health is then checked.

    pytest tests/deploy/test_deploy_script.py

This machine has no Docker engine, so `docker` and `git` on the script's PATH are fakes (FAKE_DOCKER below): they
record every call and keep the app's containers in a JSON file, and fail on cue (a build, a `compose up`, or the
health of containers of a given tag). What is tested is the script's decisions, not Docker.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from config.paths import PROJECT_DIR

ROOT = PROJECT_DIR
SCRIPT = ROOT / "deploy" / "deploy.sh"
OLD, NEW = "a" * 40, "b" * 40

FAKE_DOCKER = r"""#!/usr/bin/env python3
import json, os, sys
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
tag = f"  [APP_TAG={os.environ['APP_TAG']}]" if "APP_TAG" in os.environ else ""
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(" ".join(["docker", *args]) + tag + "\n")
def save():
    json.dump(state, open(state_path, "w"))
def fails(name):
    return os.environ.get(name, "") in (os.environ.get("APP_TAG", "-"), "always")
def container(cid):
    return next((c for c in state["containers"] if c["id"] == cid), None)
if args[:1] == ["build"]:
    sys.exit(1 if os.environ.get("FAIL_BUILD") else 0)
if args[:1] in (["pull"], ["tag"]):
    sys.exit(0)
if args[:1] == ["inspect"]:
    found = container(args[-1])
    if not found:
        sys.exit(1)
    if "IPAddress" in args[2]:
        print(f"10.0.0.{int(found['id'][1:])} ")
    else:
        print("unhealthy" if found["tag"] in os.environ.get("UNHEALTHY_TAGS", "").split(",") else "healthy")
    sys.exit(0)
if args[:1] in (["stop"], ["rm"]):
    gone = {a for a in args[1:] if a.startswith("c")}
    state["containers"] = [c for c in state["containers"] if c["id"] not in gone]
    save()
    sys.exit(0)
if args[:2] == ["compose", "ps"]:
    print("\n".join(c["id"] for c in state["containers"]))
    sys.exit(0)
if args[:2] == ["compose", "exec"]:  # wget http://<ip>:8501/readyz from inside Caddy's container
    ip = args[-1].split("//")[1].split(":")[0]
    found = container(f"c{int(ip.rsplit('.', 1)[1]):03d}")
    sys.exit(0 if state["caddy"] and found and found["tag"] not in os.environ.get("UNHEALTHY_TAGS", "") else 1)
if args[:2] == ["compose", "up"]:
    services = [a for a in args[2:] if not a.startswith("-") and "=" not in a]
    if services == ["caddy"]:
        state["caddy"] = not fails("FAIL_CADDY")
        save()
        sys.exit(0 if state["caddy"] else 1)
    if services and "app" not in services:
        sys.exit(0)
    if fails("FAIL_UP_TAG"):
        sys.exit(1)
    scale = [int(a.split("=")[1]) for a in args if a.startswith("app=")]
    wanted = scale[0] if scale else 1
    while len(state["containers"]) < wanted:
        state["next"] += 1
        state["containers"].append({"id": f"c{state['next']:03d}", "tag": os.environ.get("APP_TAG", "latest")})
    state["containers"] = state["containers"][:wanted]
    save()
    sys.exit(0)
sys.exit(f"fake docker: unexpected {args}")
"""
# Through Caddy: it answers only while it runs, and a prediction fails while a replica of a FAIL_PROXY_TAGS tag serves.
FAKE_CURL = r"""#!/usr/bin/env python3
import json, os, sys
state = json.load(open(os.environ["FAKE_STATE"]))
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(" ".join(["curl", *sys.argv[1:]]) + "\n")
bad = set(os.environ.get("FAIL_PROXY_TAGS", "").split(",")) - {""}
if not state["caddy"] or not state["containers"] or any(c["tag"] in bad for c in state["containers"]):
    sys.exit(22)
if {c["tag"] for c in state["containers"]} == {os.environ.get("FAIL_PROXY_ALONE_TAG")}:  # broken once it serves alone
    sys.exit(22)
print(json.dumps({"digit": 7, "is_digit": True}) if "/api/predict" in sys.argv[-1] else "ok")
"""
FAKE_GIT = """#!/bin/sh
echo "git $*" >> "$FAKE_CALLS"
case "$*" in *"$FAIL_GIT_ON"*) [ -n "$FAIL_GIT_ON" ] && exit 1 ;; esac
case "$*" in *"status --porcelain"*) printf '%b' "${FAKE_EDITED:-}" ;; esac
exit 0
"""


def prepare(tmp: Path, running: list[str], last_good: str | None, **cues: str) -> dict[str, str]:
    """The fakes on PATH, an app folder with .env and last-good, `running` app containers; the script's env."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("docker", FAKE_DOCKER), ("git", FAKE_GIT), ("curl", FAKE_CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    app_dir = tmp / "app"
    (app_dir / ".deploy").mkdir(parents=True, exist_ok=True)
    (app_dir / ".env").write_text(f"APP_REPLICAS=2\nAPP_TAG={last_good or 'latest'}\n")
    if last_good:
        (app_dir / ".deploy" / "last-good").write_text(last_good + "\n")
    containers = [{"id": f"c{n:03d}", "tag": tag} for n, tag in enumerate(running, start=1)]
    (tmp / "state.json").write_text(json.dumps({"containers": containers, "next": len(running), "caddy": True}))
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "APP_DIR": str(app_dir),
        "READY_SECONDS": "2",
        "POLL_SECONDS": "1",
        "DRAIN_SECONDS": "7",
        "FAKE_STATE": str(tmp / "state.json"),
        "FAKE_CALLS": str(tmp / "calls.log"),
        **cues,
    }


def outcome(tmp: Path, status: int, log: str) -> dict[str, Any]:
    """What the script did: exit status, calls, the containers left, .env's tag, last-good, its log, Caddy up."""
    app_dir = tmp / "app"
    good = app_dir / ".deploy" / "last-good"
    state = json.loads((tmp / "state.json").read_text())
    return {
        "status": status,
        "log": log,
        "calls": (tmp / "calls.log").read_text().splitlines() if (tmp / "calls.log").exists() else [],
        "containers": state["containers"],
        "caddy": state["caddy"],
        "tag": [line for line in (app_dir / ".env").read_text().splitlines() if line.startswith("APP_TAG=")],
        "last_good": good.read_text().strip() if good.exists() else None,
    }


def deploy(tmp: Path, running: list[str], last_good: str | None, *args: str, **cues: str) -> dict[str, Any]:
    env = prepare(tmp, running, last_good, **cues)
    result = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    return outcome(tmp, result.returncode, result.stderr)


def tags(run: dict[str, Any]) -> list[str]:
    return [c["tag"] for c in run["containers"]]


def index(calls: list[str], start: str, *within: str) -> int:
    return next(i for i, c in enumerate(calls) if c.startswith(start) and all(w in c for w in within))


def test_successors_serve_through_the_proxy_before_their_predecessors_are_drained(tmp_path: Path) -> None:
    run = deploy(tmp_path, [OLD, OLD], OLD, NEW)
    assert run["status"] == 0, run["log"]
    assert tags(run) == [NEW, NEW] and run["tag"] == [f"APP_TAG={NEW}"] and run["last_good"] == NEW
    calls = run["calls"]
    scale_up = index(calls, "docker compose up", "--scale app=4", f"APP_TAG={NEW}")
    first_check = index(calls, "docker inspect", "Health", "c003")
    proxy = index(calls, "docker compose up -d --no-build --no-deps caddy")
    via_proxy = index(calls, "docker compose exec -T caddy wget", "10.0.0.3:8501/readyz")
    predicted = index(calls, "curl", "/api/predict", "probe-seven.png")
    drained = index(calls, "docker stop --time 7 c001 c002")
    removed = index(calls, "docker rm -f c001 c002")
    assert scale_up < first_check < proxy < via_proxy < predicted < drained < removed, calls
    assert any(c.startswith(f"docker build --pull -t mnist-digit-classifier:{NEW}") for c in calls)
    assert not any(":latest" in c or ":previous" in c for c in calls), "images are tagged by commit"
    assert f"git checkout --quiet --detach {NEW}" in calls and not any("--force" in c for c in calls)
    secret = tmp_path / "app" / "secrets" / "operator_password"
    assert secret.read_text() == "" and stat.S_IMODE(secret.stat().st_mode) == 0o644, "made empty where missing"
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700, "readable by the containers, not by other users"


def test_an_edited_tracked_file_is_named_and_nothing_is_touched(tmp_path: Path) -> None:
    run = deploy(tmp_path, [OLD, OLD], OLD, NEW, FAKE_EDITED=" M docker-compose.yml\\n M Caddyfile\\n")
    assert run["status"] == 65 and "docker-compose.yml" in run["log"] and "Caddyfile" in run["log"], run["log"]
    assert "docker-compose.override.yml" in run["log"], "says where the edit belongs"
    assert not any(c.startswith(("docker", "curl", "git checkout", "git fetch")) for c in run["calls"])
    assert tags(run) == [OLD, OLD]


def test_ci_s_tested_image_is_pulled_and_tagged_by_commit_instead_of_built(tmp_path: Path) -> None:
    image = "ghcr.io/example/mnist@sha256:" + "0" * 64
    run = deploy(tmp_path, [OLD], OLD, NEW, image)
    assert run["status"] == 0, run["log"]
    assert f"docker pull {image}" in run["calls"] and f"docker tag {image} mnist-digit-classifier:{NEW}" in run["calls"]
    assert not any(c.startswith("docker build") for c in run["calls"])


@pytest.mark.parametrize(
    "cue",
    [
        {"UNHEALTHY_TAGS": NEW},
        {"FAIL_BUILD": "1"},
        {"FAIL_UP_TAG": NEW},
        {"FAIL_GIT_ON": f"checkout --quiet --detach {NEW}"},
        {"FAIL_CADDY": NEW},
        {"FAIL_PROXY_TAGS": NEW},
    ],
    ids=["new-release-not-ready", "build-fails", "compose-up-fails", "commit-missing", "caddy-fails", "proxy-fails"],
)
def test_every_failure_keeps_the_old_replicas_serving_and_proves_the_path(tmp_path: Path, cue: dict[str, str]) -> None:
    run = deploy(tmp_path, [OLD, OLD], OLD, NEW, **cue)
    assert run["status"] == 1, run["log"]
    assert tags(run) == [OLD, OLD], "the running replicas were never stopped, and the new ones are gone"
    assert run["tag"] == [f"APP_TAG={OLD}"] and run["last_good"] == OLD and run["caddy"], "Caddy serves again"
    assert f"git -C {tmp_path / 'app'} checkout --quiet --detach {OLD}" in run["calls"]
    assert "rolled back to " + OLD + ", and it serves through the proxy" in run["log"]
    assert not any(c.startswith("docker stop") and "c001" in c for c in run["calls"]), "the old were never drained"


def test_a_failure_after_the_old_were_drained_brings_the_last_good_release_back_first(tmp_path: Path) -> None:
    """The new release serves beside the old but not alone: the last good release is started again and reached
    through the proxy before the new replicas go."""
    run = deploy(tmp_path, [OLD, OLD], OLD, NEW, FAIL_PROXY_ALONE_TAG=NEW)
    assert run["status"] == 1 and tags(run) == [OLD, OLD], run["log"]
    assert "the proxy does not serve once the old replicas are gone" in run["log"]
    calls = run["calls"]
    restarted = index(calls, "docker compose up", "--scale app=4", f"APP_TAG={OLD}")
    reached = index(calls, "docker compose exec -T caddy wget", "10.0.0.5:8501/readyz")
    new_gone = index(calls, "docker stop --time 7 c003 c004")
    proven = max(i for i, c in enumerate(calls) if "/api/predict" in c)
    assert restarted < reached < new_gone < proven, "the new replicas served until the last good release was back"


def test_an_interrupted_deploy_rolls_back(tmp_path: Path) -> None:
    """SIGHUP (the SSH session dropped) while the new replicas come up: the old ones keep serving."""
    env = prepare(tmp_path, [OLD, OLD], OLD, UNHEALTHY_TAGS=NEW, READY_SECONDS="60")
    # As an SSH session starts it: SIGHUP at its default. Under nohup (a runner may start the suite so) it is ignored,
    # and bash cannot trap a signal that was ignored when it started, so the deploy would never hear it.
    process = subprocess.Popen(
        ["bash", str(SCRIPT), NEW],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    calls = tmp_path / "calls.log"
    deadline = time.monotonic() + 30
    while not (calls.exists() and "Health" in calls.read_text() and "c003" in calls.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, "the deploy never reached the health wait"
        time.sleep(0.1)
    process.send_signal(signal.SIGHUP)
    _, log = process.communicate(timeout=60)
    run = outcome(tmp_path, process.returncode, log)
    assert run["status"] == 1 and "interrupted by HUP" in run["log"], run["log"]
    assert tags(run) == [OLD, OLD] and run["last_good"] == OLD and run["tag"] == [f"APP_TAG={OLD}"]
    assert "interrupted by HUP" in (tmp_path / "app" / ".deploy" / "deploy.log").read_text(), "kept past the session"


def test_a_second_deploy_does_not_start_while_one_runs(tmp_path: Path) -> None:
    env = prepare(tmp_path, [OLD, OLD], OLD)
    with open(tmp_path / "app" / ".deploy" / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first deploy, still running
        result = subprocess.run(["bash", str(SCRIPT), NEW], env=env, capture_output=True, text=True, timeout=60)
    run = outcome(tmp_path, result.returncode, result.stderr)
    assert run["status"] == 75 and "another deploy is running" in run["log"], run["log"]
    assert not any(c.startswith(("docker", "curl", "git checkout")) for c in run["calls"]) and tags(run) == [OLD, OLD]


def test_a_dead_release_is_restarted_from_the_last_good_one(tmp_path: Path) -> None:
    """Nothing running (the replicas had died) and the new release fails: the last good one is started, proven."""
    run = deploy(tmp_path, [], OLD, NEW, UNHEALTHY_TAGS=NEW)
    assert run["status"] == 1 and tags(run) == [OLD, OLD], run["log"]
    assert "and it serves through the proxy" in run["log"]


def test_a_rollback_never_removes_the_only_healthy_replicas(tmp_path: Path) -> None:
    """The new release is healthy but the proxy will not serve it, and the last good release cannot start either:
    the new replicas stay, and the script says so loudly."""
    run = deploy(tmp_path, [], OLD, NEW, UNHEALTHY_TAGS=OLD, FAIL_PROXY_TAGS=NEW)
    assert run["status"] == 2 and "ROLLBACK UNHEALTHY" in run["log"] and "kept" in run["log"], run["log"]
    assert NEW in tags(run), "the only healthy replicas were not removed"


def test_a_rollback_that_does_not_serve_either_is_said_loudly(tmp_path: Path) -> None:
    run = deploy(tmp_path, [], OLD, NEW, UNHEALTHY_TAGS=f"{OLD},{NEW}")
    assert run["status"] == 2 and "ROLLBACK UNHEALTHY" in run["log"], run["log"]


def test_the_first_deploy_has_nothing_to_roll_back_to_and_says_so(tmp_path: Path) -> None:
    failed = deploy(tmp_path, [], None, NEW, UNHEALTHY_TAGS=NEW)
    assert failed["status"] == 1 and "no earlier release" in failed["log"] and failed["containers"] == []
    succeeded = deploy(tmp_path / "second", [], None, NEW)
    assert succeeded["status"] == 0 and succeeded["last_good"] == NEW and tags(succeeded) == [NEW, NEW]


def test_the_forced_command_s_words_are_the_arguments(tmp_path: Path) -> None:
    run = deploy(tmp_path, [OLD], OLD, SSH_ORIGINAL_COMMAND=NEW)
    assert run["status"] == 0 and tags(run) == [NEW, NEW], run["log"]


def test_only_a_full_commit_id_and_an_image_by_digest_are_deployed(tmp_path: Path) -> None:
    for bad in (["main"], ["; rm -rf /"], ["b" * 39], [NEW, "ghcr.io/x/y:latest"], [NEW, "x@sha256:0", "more"]):
        run = deploy(tmp_path, [OLD], OLD, *bad)
        assert run["status"] == 64 and run["calls"] == [] and tags(run) == [OLD], bad
    run = deploy(tmp_path, [OLD], OLD, SSH_ORIGINAL_COMMAND=f"{NEW} x; reboot")
    assert run["status"] == 64 and run["calls"] == []
    text = SCRIPT.read_text()
    assert "set -e" not in text.replace("set -euo", "?"), "no -e: a failing step must reach the rollback"
    assert "set -euo" not in text


def test_the_probe_is_a_seven_the_shipped_model_reads(checkpoint: Any) -> None:
    import utils

    prediction = utils.classify(
        checkpoint.model, utils.load_uploaded_image((ROOT / "deploy" / "probe-seven.png").read_bytes())
    )
    assert prediction.is_digit and prediction.digit == 7
