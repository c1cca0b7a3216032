"""The ``memadvise`` command: a thin Typer layer over the library.

Errors the user can act on (``MemadviseError``) become one stderr line and an exit code
here, in one place; nothing else catches them.
"""

from __future__ import annotations


import click
import typer
from typer.core import TyperGroup

from memadvise._errors import MemadviseError


# Typer >= 0.24 vendors click (typer._click), older ones use click itself: parse errors
# raise that click's UsageError, the public typer.BadParameter's base in both.
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _Group(TyperGroup):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except _UsageError as exc:  # an unknown command or option, a bad value: one line, exit 2
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command: its help
                raise
            sub = " ".join(filter(None, ["memadvise", ctx.invoked_subcommand]))
            msg = exc.format_message().rstrip(".")
            hint = ""
            if type(exc).__name__ == "NoSuchOption" and ctx.invoked_subcommand in ("profile", "check"):
                hint = "; options after SCRIPT belong to the script: put them after `--`"
            typer.echo(f"memadvise: error: {msg[:1].lower() + msg[1:]} (see `{sub} -h`){hint}", err=True)
            ctx.exit(exc.exit_code)
        except MemadviseError as exc:
            from memadvise.collect.distributed import rank_env

            env = rank_env()
            where = f"rank {env[0]}: " if env is not None else ""  # under torchrun: say which rank
            if getattr(exc, "details", None):  # the user's script's own traceback
                typer.echo(exc.details, err=True)
            typer.echo(f"memadvise: error: {where}{exc}", err=True)
            ctx.exit(exc.exit_code)


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Memory profiler and activation-recompute advisor for PyTorch training.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register() -> None:
    from memadvise.cli import apply, check, fit, profile, report, show, suggest  # noqa: F401


_register()


def main() -> None:
    from memadvise.collect.distributed import exit_rank, rank_env

    if rank_env() is None:
        app(prog_name="memadvise")
        return
    try:  # a torchrun rank: leave without interpreter teardown (see exit_rank)
        app(prog_name="memadvise")
    except SystemExit as exc:
        exit_rank(exc.code)
    exit_rank(0)


if __name__ == "__main__":
    main()
