"""The global batch under tf.distribute: each replica holds a consecutive slice of it.

The loss is the global batch's mean however the batch is split, and each image
gets the noise of its position in the global batch (tests/test_distribute.py).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["batch_mean", "replicas", "global_position"]


def batch_mean(values):
    """The mean of (B,) `values`, and 0 for an empty batch (a replica left without images)."""
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.shape(values)[0], values.dtype))


def replicas() -> int:
    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


def global_position(batch_size):
    """(offset of this replica's first image in the global batch, global batch size).

    Replicas hold consecutive slices of the global batch, in replica order (how
    tf.distribute splits a batch, also when the last one is uneven); the
    slices' sizes are gathered from every replica. One device: (0, batch_size).
    """
    if replicas() == 1:
        return 0, batch_size
    context = tf.distribute.get_replica_context()
    sizes = context.all_gather(tf.reshape(tf.cast(batch_size, tf.int32), [1]), axis=0)  # (replicas,)
    offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    return offset, tf.reduce_sum(sizes)
