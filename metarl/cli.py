"""Command-line plumbing: typed configs through tyro, and errors as one line, not a traceback."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

import tyro

from metarl.errors import MetarlError

T = TypeVar("T")


def _one_line(text: str) -> str:
    """Condense tyro's error panel (boxed on a terminal, plain otherwise) into one line."""
    title, paragraphs, current = "", [], []
    for raw in text.splitlines() + ["-"]:
        line = raw.strip()
        if line.startswith("╭"):
            title = line.strip("╭╮─ ")
            continue
        line = line.strip("│╰╯").strip()
        if line and set(line) <= set("─-"):
            if current:
                paragraphs.append(" ".join(current))
            current = []
        elif line:
            current.append(line)
    if not title and len(paragraphs) > 1:  # plain layout: the title is its own paragraph
        title = paragraphs.pop(0)
    paragraphs = [p for p in paragraphs if not p.startswith(("For full helptext", "Argument help"))]
    if not paragraphs:
        return title or "invalid arguments"
    message = re.sub(r"^Error parsing __tyro[^:]*: ", "", "; ".join(paragraphs))
    if title and title.lower() not in message.lower() and title.lower() != "value error":
        return f"{title.lower()}: {message}"
    return message


def _parse(fn: Callable[[], T], prog: str) -> T:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return fn()
    except SystemExit as e:
        if e.code not in (0, None):
            print(f"{prog}: error: {_one_line(err.getvalue())} (see {prog} --help)",
                  file=sys.stderr)
        else:
            sys.stderr.write(err.getvalue())
        raise


def parse_preset(presets: Mapping[str, tuple[str, T]], args: Sequence[str] | None, prog: str,
                 description: str) -> T:
    """``prog PRESET [--key value ...]``: a preset config with typed overrides."""
    return _parse(lambda: tyro.extras.overridable_config_cli(
        dict(presets), prog=prog, description=description, args=args), prog)


def parse(cls: type[T], args: Sequence[str] | None, prog: str, description: str) -> T:
    return _parse(lambda: tyro.cli(cls, prog=prog, description=description, args=args), prog)


@contextlib.contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Print a user error as ``prog: error: ...`` and exit 1; ``METARL_DEBUG=1`` re-raises."""
    try:
        yield
    except (MetarlError, ValueError, FileNotFoundError, KeyError) as e:
        if os.environ.get("METARL_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the last checkpoint is intact, continue with --resume",
              file=sys.stderr)
        raise SystemExit(130) from None
