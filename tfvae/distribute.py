"""Choosing a tf.distribute strategy, and the process-wide settings that must precede it.

    auto          MultiWorkerMirroredStrategy when TF_CONFIG names a cluster,
                  MirroredStrategy when several GPUs (or --cpu-devices > 1) are visible,
                  the default strategy otherwise
    default       one device
    mirrored      all local GPUs, or the CPU split into --cpu-devices logical devices
    multi_worker  MultiWorkerMirroredStrategy over the cluster in TF_CONFIG
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from tfvae.config import Config
from tfvae.errors import ConfigError

__all__ = [
    "configure_devices",
    "make_strategy",
    "check_strategy",
    "is_chief",
    "is_multi_worker",
    "cluster_from_env",
    "agree",
]

# `agree` sends each worker's word as a fixed-size int32 row: kind, number, message length, message bytes.
_MESSAGE_BYTES = 2048


def cluster_from_env() -> dict | None:
    """The parsed TF_CONFIG if it names a cluster with more than one task, else None."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        tf_config = json.loads(raw)
        cluster = tf_config.get("cluster", {})
        tasks = sum(len(v) for v in cluster.values())
    except (ValueError, AttributeError, TypeError):
        raise ConfigError("TF_CONFIG is not valid JSON with a 'cluster' and a 'task'") from None
    return tf_config if tasks > 1 else None


def configure_devices(config: Config) -> None:
    """Split the CPU into logical devices and set mixed precision; call before any op runs."""
    if config.cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(config.cpu_devices)]
            )
        except RuntimeError:  # already initialised (a second run in one process): keep what is there
            pass
    import tf_keras as tfk

    policy = "float32"
    if config.mixed_precision:
        # float16 needs loss scaling and a GPU; bfloat16 has float32's range and runs on CPUs.
        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    tfk.mixed_precision.set_global_policy(policy)


def make_strategy(config: Config) -> tf.distribute.Strategy:
    """The strategy that `config.strategy` asks for on this machine."""
    name = config.strategy
    cluster = cluster_from_env()
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if cluster is not None:
            name = "multi_worker"
        elif len(gpus) > 1 or config.cpu_devices > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        # Several CPU devices need an all-reduce that does not rely on NCCL.
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        if cluster is None:
            raise ConfigError("--strategy multi_worker needs TF_CONFIG naming a cluster of two or more tasks")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown --strategy {name!r}")


def check_strategy(config: Config, strategy: tf.distribute.Strategy) -> None:
    """Refuse combinations TensorFlow cannot run, before any work is spent.

    XLA on CPU has no cross-device collectives (TensorFlow says so only at the
    first step, deep in a traceback), so --jit-compile needs one replica or GPUs.
    """
    if config.jit_compile and strategy.num_replicas_in_sync > 1 and not tf.config.list_physical_devices("GPU"):
        raise ConfigError(
            f"--jit-compile cannot run with {strategy.num_replicas_in_sync} replicas on CPUs "
            "(XLA has no cross-device collectives on CPU); drop --jit-compile or train on GPUs"
        )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes checkpoints, history and plots."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True when the run is computed by several processes that must act on one decision."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def agree(strategy: tf.distribute.Strategy, kind: int, number: int, message: str = "") -> list:
    """Every worker's (kind, number, message), gathered on every worker in replica order.

    A collective: each worker of a MultiWorkerMirroredStrategy calls it once
    with its own word (the chief its decision, a worker that failed its error),
    and all of them return the same list, so that every worker acts on the
    chief's decision or stops with the same error instead of waiting forever
    in a later collective.
    """
    encoded = message.encode("utf-8")[:_MESSAGE_BYTES]
    row = np.zeros(3 + _MESSAGE_BYTES, np.int32)
    row[:3] = kind, number, len(encoded)
    row[3 : 3 + len(encoded)] = np.frombuffer(encoded, np.uint8)

    @tf.function
    def gather(value):
        def replica_fn(v):
            return tf.distribute.get_replica_context().all_gather(v[tf.newaxis], axis=0)

        return strategy.run(replica_fn, args=(value,))

    rows = strategy.experimental_local_results(gather(tf.constant(row)))[0].numpy()  # (replicas, 3 + bytes)
    return [
        (int(r[0]), int(r[1]), bytes(r[3 : 3 + r[2]].astype(np.uint8)).decode("utf-8", "replace"))
        for r in rows
    ]
