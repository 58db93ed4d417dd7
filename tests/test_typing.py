"""Types reach the editor: ``mypy --strict`` passes on a user-style bot
(tests/typing_user_code.py) and reports the mistakes the typed overloads exist to catch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER_CODE = ROOT / "tests" / "typing_user_code.py"

MISTAKES = """
from kryten_sync import ChatMessageEvent, KrytenClient

client = KrytenClient({"nats": {"servers": ["nats://127.0.0.1:4222"]}, "channels": []})
print(client.wait_for("chatMsg").uid)  # E: attr-defined


@client.on("addUser")  # E: arg-type
def greet(event: ChatMessageEvent) -> None:
    print(event.message)


with client.events("setAFK") as stream:
    print(stream.get().message)  # E: attr-defined
client.on("voteskip", handler=lambda event: print(event.count + event.need))
poll = client.wait_for("newPoll", predicate=lambda poll: poll.title == "x")
print(poll.counts[0] + 1)  # E: operator
"""


def test_user_code_passes_mypy_strict_and_mistakes_are_reported(tmp_path: Path) -> None:
    mistakes = tmp_path / "mistakes.py"
    mistakes.write_text(MISTAKES)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--show-error-codes",
            "--no-error-summary",
            str(USER_CODE),
            str(mistakes),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    found: dict[str, set[tuple[int, str]]] = {}
    for line in done.stdout.splitlines():
        if ": note: " in line:
            continue
        match = re.match(r"(.+?):(\d+): error: .*\[([\w-]+)\]$", line)
        assert match, line
        found.setdefault(Path(match[1]).name, set()).add((int(match[2]), match[3]))
    assert "typing_user_code.py" not in found, done.stdout
    expected = {
        (number, line.rsplit("# E: ", 1)[1])
        for number, line in enumerate(MISTAKES.splitlines(), start=1)
        if "# E: " in line
    }
    assert found.get("mistakes.py") == expected, done.stdout + done.stderr
