"""Local dataset builders: real Minari datasets collected here with real simulators.

No machine here reaches a dataset host, so the datasets the tests and the demo need are built
locally, in Minari format, each with its evaluation environment and reference scores. A builder is
registered under the dataset id it writes (``registry.register_builder``); ``flowbench data build ID`` runs it.

Writes are atomic: the dataset is created under a hidden staging directory inside the Minari root
and renamed into place only when complete, so an interrupted build leaves nothing half-written.
"""

from harness.datasets import ogbench, pointmaze, toy  # noqa: F401  (each registers its builders)
from harness.datasets.registry import (BUILDER_AUTHOR, BUILDERS, Builder, UnknownDataset, already_built, build,
                                       build_settings, builder_namespaces, get_builder, is_local, minari_root,
                                       register_builder, requested_settings, write_dataset)

__all__ = ["BUILDER_AUTHOR", "BUILDERS", "Builder", "UnknownDataset", "already_built", "build", "build_settings",
           "builder_namespaces", "get_builder", "is_local", "minari_root", "register_builder", "requested_settings",
           "write_dataset"]
