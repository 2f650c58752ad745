"""The registries of the model zoo: architectures and backbones, looked up by config name.

Each architecture class and backbone factory registers itself where it is defined::

    from models.registry import ARCHITECTURES

    @ARCHITECTURES.register("toy_net")
    class ToyNet(SegmentationModel): ...

``builders/model_builder.py`` looks the config's model up in :data:`ARCHITECTURES` (``model {
icnet {...} }``, ``model { pspnet {...} }`` or ``model { architecture { name: "toy_net" ... }
}``) and the backbones look their ``feature_extractor.type`` up in :data:`BACKBONES`; config
validation lists the registered names, so an unknown name is one error naming the known ones.

Registered objects:

* architecture: a callable (normally the ``SegmentationModel`` subclass) taking ``num_classes``
  and the keyword arguments of the model's config (``filter_scale``, ``backbone``,
  ``hyperparams``, ``pooling_factors``, ``upsample_logits``, ``layer_widths``,
  ``sync_batch_norm`` and any ``options``) and returning a ``SegmentationModel``;
* backbone: a factory ``(widths, weight_decay, atrous_rates, sync_batch_norm) -> Backbone``
  (see :mod:`models.backbones.base`).

Importing :mod:`models` fills both registries with the built-in entries.
"""

from __future__ import annotations

from core.registry import Registry, UnknownNameError

ARCHITECTURES: Registry = Registry("architecture")
BACKBONES: Registry = Registry("backbone")

__all__ = ["ARCHITECTURES", "BACKBONES", "UnknownNameError"]
