"""`microagent hub ...`: the local IoT Hub emulator (tools/hub_emulator), a separate program.

The agent itself never imports hub_emulator; only this command does, to run it.
"""
import functools

from hub_emulator import cli as hub_cli


def _translated(run, args):
    from host_sim.cli import UsageError
    try:
        return run(args)
    except hub_cli.UsageError as exc:
        raise UsageError(str(exc)) from None


def register(subparsers):
    parser = subparsers.add_parser("hub", help="local Azure IoT Hub emulator (serve, add-device, set-desired, messages)")
    commands = parser.add_subparsers(dest="hub_command", metavar="HUB_COMMAND", required=True)
    hub_cli.add_commands(commands)
    for sub in commands.choices.values():
        sub.set_defaults(run=functools.partial(_translated, sub.get_default("run")))
