"""After ``pip install -e <repo>`` a user's mypy, run in the user's own project,
finds kryten_sync and its types.

setuptools implements an editable install of a flat layout with an import hook that
mypy cannot follow (``import-not-found``); ``package_dir = =.`` in setup.cfg makes it a
plain path entry instead. The test builds a fresh virtualenv (its dependencies come
from this environment, so nothing is downloaded but setuptools for the build), checks
that mypy does not find kryten_sync there before the install, installs the repository
editable and type-checks a small bot from a directory outside the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BOT = """\
from kryten_sync import ChatMessageEvent, KrytenClient

client = KrytenClient({"nats": {"servers": ["nats://127.0.0.1:4222"]}, "channels": []})


@client.on("chatMsg")
def on_chat(event: ChatMessageEvent) -> None:
    print(event.text)


print(client.wait_for("chatMsg").message.upper())
"""


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def test_mypy_in_a_users_project_finds_an_editable_install(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
    )
    # nats-py and pydantic from this environment: a path entry (its .pth files unread).
    (Path(purelib.stdout.strip()) / "deps_from_test_env.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    project = tmp_path / "my_bot"
    project.mkdir()
    (project / "bot.py").write_text(BOT)
    mypy = (
        sys.executable, "-m", "mypy", "--strict", "--python-executable", python,
        "--cache-dir", tmp_path / "mypy-cache", "--no-error-summary", "bot.py",
    )  # fmt: skip

    before = run(*mypy, cwd=project)
    assert 'Cannot find implementation or library stub for module named "kryten_sync"' in (
        before.stdout
    ), before.stdout + before.stderr

    installed = run(python, "-m", "pip", "install", "-q", "--no-deps", "-e", ROOT, cwd=project)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    imported = run(python, "-c", "import kryten_sync; print(kryten_sync.__file__)", cwd=project)
    assert imported.stdout.strip() == str(ROOT / "kryten_sync" / "__init__.py"), imported.stderr

    after = run(*mypy, cwd=project)
    assert (after.returncode, after.stdout) == (0, ""), after.stdout + after.stderr
