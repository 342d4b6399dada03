"""Command-line plumbing: typed configs through tyro, and errors as one line, not a traceback."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Annotated, Any, TypeVar, Union

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


def subcommands(choices: Iterable[tuple[str, type, str, Any]]) -> Any:
    """A union of config types, each a subcommand: ``(name, type, description, default)``
    (default ``None``: the type's own defaults)."""
    members = tuple(Annotated[cls, tyro.conf.subcommand(name, description=doc,
                                                        **({} if default is None else
                                                           {"default": default}))]
                    for name, cls, doc, default in choices)
    return Union[members]  # noqa: UP007 (built at run time, so no X | Y syntax)


def parse(cls: Any, args: Sequence[str] | None, prog: str, description: str) -> Any:
    """``cls`` (a config dataclass, or a union of them as subcommands) from ``args``."""
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
