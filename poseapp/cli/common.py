"""What every command shares: the one-line failure, logging, warnings, --offline, option types, and the
group that runs ``predict`` when no sub-command is named. Imports nothing of the other command modules."""
from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import click


class Finite(click.FloatRange):
    """A float option that must be a finite number (click's FloatRange lets nan through any range)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        return "finite" if self.min is None and self.max is None else super()._describe_range()


class DefaultGroup(click.Group):
    """A click group that runs ``predict`` when the first argument is not a sub-command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["predict", *args]
        return super().parse_args(ctx, args)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """As click's, except that a usage error (a bad option value, an unknown option, a missing
        --source) is one ``error:`` line naming the option and where help is, exit 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        no_args_help = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click 8.2+
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except no_args_help as e:  # `python infer.py` alone: the help, as click shows it
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:
            words = e.ctx.command_path.split()[1:] if e.ctx is not None else []
            message = " ".join(e.format_message().split())
            click.secho(f"error: {message} (see python infer.py {' '.join([*words, '--help'])})", fg="red",
                        err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.secho(f"error: {' '.join(e.format_message().split())}", fg="red", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


def fail(message: str, verbose: bool, code: int = 2) -> None:
    if verbose:
        traceback.print_exc()
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def configure_logging(verbose: bool) -> None:
    """Our log at INFO with --verbose, else WARNING; OpenCV's and FFmpeg's own console messages (an absent
    camera's probing, "moov atom not found" while a file is checked) only with --verbose: without it a
    failure is the one line this module prints."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        return
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")  # read when cv2 is first imported
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2_logging = getattr(getattr(sys.modules.get("cv2"), "utils", None), "logging", None)
    if cv2_logging is not None:  # cv2 already imported (the tests, an embedding program)
        cv2_logging.setLogLevel(cv2_logging.LOG_LEVEL_SILENT)


def option_flags(command: click.Command) -> dict[str, str]:
    """The command's options by parameter name (``out_dir`` -> ``--out``): how its errors name them."""
    return {p.name: p.opts[0] for p in command.params if p.name and p.opts and p.opts[0].startswith("--")}


def warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def offline_from_env() -> bool:
    """``POSEAPP_OFFLINE`` read once, at the edge: the commands pass ``--offline or offline_from_env()`` down
    as an argument (nothing below the command line reads the variable when it is given one)."""
    from poseapp.hub import is_offline

    return is_offline()
