"""deploy/deploy.sh's control flow: successors ready before predecessors go, and every failure rolls back to the last
good release, whose health is then checked.

    pytest tests/deploy/test_deploy_script.py

This machine has no Docker engine, so `docker` and `git` on the script's PATH are fakes (FAKE_DOCKER below): they
record every call and keep the app's containers in a JSON file, and fail on cue (a build, a `compose up`, or the
health of containers of a given tag). What is tested is the script's decisions, not Docker.
"""

from __future__ import annotations

import json
import os
import subprocess
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
if args[:1] == ["build"]:
    sys.exit(1 if os.environ.get("FAIL_BUILD") else 0)
if args[:1] in (["pull"], ["tag"]):
    sys.exit(0)
if args[:1] == ["inspect"]:
    found = [c for c in state["containers"] if c["id"] == args[-1]]
    if not found:
        sys.exit(1)
    print("unhealthy" if found[0]["tag"] in os.environ.get("UNHEALTHY_TAGS", "").split(",") else "healthy")
    sys.exit(0)
if args[:1] == ["rm"]:
    gone = set(args[2:])
    state["containers"] = [c for c in state["containers"] if c["id"] not in gone]
    save()
    sys.exit(0)
if args[:2] == ["compose", "ps"]:
    print("\n".join(c["id"] for c in state["containers"]))
    sys.exit(0)
if args[:2] == ["compose", "up"]:
    services = [a for a in args[2:] if not a.startswith("-") and "=" not in a]
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
FAKE_GIT = """#!/bin/sh
echo "git $*" >> "$FAKE_CALLS"
case "$*" in *"$FAIL_GIT_ON"*) [ -n "$FAIL_GIT_ON" ] && exit 1 ;; esac
exit 0
"""


def deploy(tmp: Path, running: list[str], last_good: str | None, *args: str, **cues: str) -> dict[str, Any]:
    """Run deploy.sh with the fakes; what it did: exit status, calls, the containers left, .env, last-good, log."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("docker", FAKE_DOCKER), ("git", FAKE_GIT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    app_dir = tmp / "app"
    (app_dir / ".deploy").mkdir(parents=True, exist_ok=True)
    (app_dir / ".env").write_text(f"APP_REPLICAS=2\nAPP_TAG={last_good or 'latest'}\n")
    if last_good:
        (app_dir / ".deploy" / "last-good").write_text(last_good + "\n")
    containers = [{"id": f"c{n:03d}", "tag": tag} for n, tag in enumerate(running, start=1)]
    (tmp / "state.json").write_text(json.dumps({"containers": containers, "next": len(running)}))
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "APP_DIR": str(app_dir),
        "READY_SECONDS": "2",
        "POLL_SECONDS": "1",
        "FAKE_STATE": str(tmp / "state.json"),
        "FAKE_CALLS": str(tmp / "calls.log"),
        **cues,
    }
    result = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    good = app_dir / ".deploy" / "last-good"
    return {
        "status": result.returncode,
        "log": result.stderr,
        "calls": (tmp / "calls.log").read_text().splitlines() if (tmp / "calls.log").exists() else [],
        "containers": json.loads((tmp / "state.json").read_text())["containers"],
        "tag": [line for line in (app_dir / ".env").read_text().splitlines() if line.startswith("APP_TAG=")],
        "last_good": good.read_text().strip() if good.exists() else None,
    }


def tags(run: dict[str, Any]) -> list[str]:
    return [c["tag"] for c in run["containers"]]


def test_successors_are_ready_before_their_predecessors_go(tmp_path: Path) -> None:
    run = deploy(tmp_path, [OLD, OLD], OLD, NEW)
    assert run["status"] == 0, run["log"]
    assert tags(run) == [NEW, NEW] and run["tag"] == [f"APP_TAG={NEW}"] and run["last_good"] == NEW
    calls = run["calls"]
    scale_up = next(i for i, c in enumerate(calls) if "--scale app=4" in c and f"APP_TAG={NEW}" in c)
    first_check = next(i for i, c in enumerate(calls) if c.startswith("docker inspect") and "c003" in c)
    removal = next(i for i, c in enumerate(calls) if c.startswith("docker rm -f c001 c002"))
    assert scale_up < first_check < removal, "two old replicas served until two new ones were healthy"
    assert any(c.startswith(f"docker build --pull -t mnist-digit-classifier:{NEW}") for c in calls)
    assert not any(":latest" in c or ":previous" in c for c in calls), "images are tagged by commit"


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
        {"FAIL_GIT_ON": f"checkout --quiet --force --detach {NEW}"},
    ],
    ids=["new-release-not-ready", "build-fails", "compose-up-fails", "commit-missing"],
)
def test_every_failure_keeps_the_last_good_release_serving_and_checks_it(tmp_path: Path, cue: dict[str, str]) -> None:
    run = deploy(tmp_path, [OLD, OLD], OLD, NEW, **cue)
    assert run["status"] == 1, run["log"]
    assert tags(run) == [OLD, OLD], "the running replicas were never stopped, and the new ones are gone"
    assert run["tag"] == [f"APP_TAG={OLD}"] and run["last_good"] == OLD
    assert f"git -C {tmp_path / 'app'} checkout --quiet --force --detach {OLD}" in run["calls"]
    assert "rolled back to " + OLD + ", and it is healthy" in run["log"]


def test_a_dead_release_is_restarted_from_the_last_good_one(tmp_path: Path) -> None:
    """Nothing running (the replicas had died) and the new release fails: the last good one is started, checked."""
    run = deploy(tmp_path, [], OLD, NEW, UNHEALTHY_TAGS=NEW)
    assert run["status"] == 1 and tags(run) == [OLD, OLD], run["log"]
    assert "and it is healthy" in run["log"]


def test_a_rollback_that_is_not_healthy_either_is_said_loudly(tmp_path: Path) -> None:
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
