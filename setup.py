"""The one compiled part: ``switchover.parity._members`` (docs/performance-parity.md, session 10).

Optional: where it cannot be built (no C compiler), the install goes on and the proxy's diff reads
JSON with msgspec alone, giving the same results more slowly. Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "switchover.parity._members",
            ["src/switchover/parity/_members.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
