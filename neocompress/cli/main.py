"""Entry point: the click group, and the one place where errors become messages and exit codes.

Exit codes: 0 success; 2 bad input (recipe, source, arguments, existing output); 1 anything else. Messages go to
stderr and say what and where; `--debug` adds the traceback.
"""

from __future__ import annotations

import sys
import traceback

import click

from neocompress.core.errors import NeocompressError, UserInputError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="neocompress")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Compress text-to-video diffusion transformers for the Qualcomm Hexagon NPU."""
    ctx.obj = {"debug": debug}


def _register() -> None:
    from neocompress.cli import (
        apply,
        convert_weights,
        generate,
        inspect,
        passes,
        plan,
        prune_checkpoint,
        run_bundle,
        train_miniature,
        validate,
    )
    from neocompress.cli import eval as eval_command

    for module in (apply, plan, validate, inspect, generate, eval_command, train_miniature, prune_checkpoint,
                   run_bundle, convert_weights):
        cli.add_command(module.command)
    cli.add_command(passes.group)


_register()


INTERRUPTED = "interrupted; completed passes are cached, re-run the same command to resume"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="neocompress", standalone_mode=False)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort as e:
        # click turns a KeyboardInterrupt raised inside a command into Abort (standalone_mode=False included)
        if isinstance(e.__cause__, KeyboardInterrupt):
            click.echo(INTERRUPTED, err=True)
        else:
            click.echo("aborted", err=True)
        return 1
    except click.ClickException as e:  # usage errors: bad arguments or options
        e.show()
        return 2
    except UserInputError as e:
        click.echo(f"error: {e}", err=True)
        if debug:
            traceback.print_exc()
        return e.exit_code
    except NeocompressError as e:
        click.echo(f"error: {e}", err=True)
        if debug:
            traceback.print_exc()
        return e.exit_code
    except KeyboardInterrupt:
        click.echo(INTERRUPTED, err=True)
        return 1
    except Exception as e:  # a bug or an environment problem: still one clear line, traceback on --debug
        click.echo(f"error: unexpected {type(e).__name__}: {e} (run with --debug for the traceback)", err=True)
        if debug:
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
