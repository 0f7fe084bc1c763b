"""The shared training engine: one Accelerate loop for every neocompress pass that trains.

`train(config, modules, loss_fn, data, work_dir)` runs it; `TrainConfig` holds the hyper-parameters,
`TrainResult` what came out; `plot_losses` draws the loss curves of a run's history.
"""

from neocompress.train.checkpoint import EMA
from neocompress.train.data import StreamBatchSampler, epoch_permutation
from neocompress.train.engine import (
    LOG_FILE,
    LossFn,
    TrainConfig,
    TrainResult,
    lr_factor,
    plot_losses,
    resolve_mixed_precision,
    train,
)

__all__ = [
    "EMA",
    "LOG_FILE",
    "LossFn",
    "StreamBatchSampler",
    "TrainConfig",
    "TrainResult",
    "epoch_permutation",
    "lr_factor",
    "plot_losses",
    "resolve_mixed_precision",
    "train",
]
