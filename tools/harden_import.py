"""harden-import: not built yet (see the issue list); it refuses to run rather than pretend."""

import sys

from harden.tools.cli import CommandError, run_command


def main(argv=None) -> int:
    def body():
        raise CommandError("not implemented yet", 2)

    return run_command("harden-import", body)


if __name__ == "__main__":
    sys.exit(main())
