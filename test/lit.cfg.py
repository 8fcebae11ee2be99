"""lit configuration: harden-opt and filecheck from the project's virtual environment."""

import os
import sys

import lit.formats

config.name = "harden"
# lit 23 refuses execute_external=True here; the internal shell runs RUN lines.
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.excludes = ["Inputs"]

# The tools live beside the Python running lit (the project's .venv/bin).
bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join([bin_dir, config.environment.get("PATH", os.environ["PATH"])])
config.substitutions.append(("harden-opt", os.path.join(bin_dir, "harden-opt")))
config.substitutions.append(("filecheck", os.path.join(bin_dir, "filecheck")))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))

# The C ternary kernels (kernel=vnni) run only where their object is built and the CPU
# has AVX-512 VNNI; their lit tests require this feature.

from harden.kernels.contract import unavailable_reason  # noqa: E402

if unavailable_reason() is None:
    config.available_features.add("vnni-kernels")
