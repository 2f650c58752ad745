"""Output widths of the compressible convolutions: ``filter_scale`` and ``layer_widths``.

The original turned ``filter_scale`` into a divisor ``1 / filter_scale`` and gave every
compressible conv ``depth // divisor`` filters. Here a conv gets ``int(depth * filter_scale)``
filters, which is the same number for the scales anyone uses (1, 0.5, 0.25, 0.125: the divisor is
exact) and is exactly the rule of the filter pruner, which keeps ``int(cout * compression_factor)``
filters. A checkpoint pruned with factor ``c`` therefore rebuilds with ``filter_scale=c``.

``layer_widths`` overrides single convs by their slim scope (for checkpoints whose layers were
pruned unevenly). Every key must name a conv that the model builds; unknown keys raise.
"""

from __future__ import annotations

from collections.abc import Mapping


def make_divisible(value: float, divisor: int) -> int:
    """slim MobileNet's channel rounding: nearest multiple of ``divisor``, at least ``divisor``,
    and never more than 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class WidthResolver:
    """Hands out conv widths and remembers which scopes exist, to validate ``layer_widths``.

    Args:
      filter_scale: fraction of filters kept in compressible convs, in (0, 1].
      layer_widths: optional map from a conv's full slim scope (e.g.
        ``SharedFeatureExtractor/resnet_v1_50/block2/unit_1/bottleneck_v1/conv1``) to its number of
        output filters, which replaces the scaled width.

    Raises:
      ValueError: if filter_scale is outside (0, 1] or a width is not a positive integer.
    """

    def __init__(self, filter_scale: float, layer_widths: Mapping[str, int] | None = None):
        if not isinstance(filter_scale, (int, float)) or not 0.0 < filter_scale <= 1.0:
            raise ValueError(
                f"filter_scale must be in (0, 1] (the fraction of filters kept), got "
                f"{filter_scale!r}. Use 1.0 for the full model, 0.5 for the pruned one."
            )
        self.filter_scale = float(filter_scale)
        self.layer_widths = dict(layer_widths or {})
        for scope, width in self.layer_widths.items():
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ValueError(
                    f"layer_widths[{scope!r}] must be a positive int (output filters), got {width!r}."
                )
        self._seen: dict[str, int] = {}
        self._fixed: set[str] = set()

    def width(self, scope: str, depth: int, *, scalable: bool = True, divisible_by: int = 1) -> int:
        """Returns the width of the conv at ``scope`` and records the scope.

        Args:
          scope: full slim scope of the conv (no trailing ``/weights``).
          depth: nominal width at filter_scale 1.0.
          scalable: False for convs the original never compressed (their nominal width is kept
            unless layer_widths names them).
          divisible_by: round the (scaled) width to a multiple of this, as slim MobileNet does
            (:func:`make_divisible`); 1 truncates with ``int``.
        """
        if scope in self._seen:
            raise ValueError(f"Internal error: conv scope {scope!r} is used twice.")
        if scope in self.layer_widths:
            result = self.layer_widths[scope]
        else:
            nominal = depth * self.filter_scale if scalable else depth
            if divisible_by > 1:
                result = make_divisible(nominal, divisible_by)
            else:
                result = max(1, int(nominal))
        self._seen[scope] = result
        return result

    def fixed(self, scope: str) -> None:
        """Records a conv whose width can never change (prediction convs)."""
        self._fixed.add(scope)

    def check_all_used(self, model_name: str) -> None:
        """Raises if ``layer_widths`` names convs the model did not build.

        Raises:
          ValueError: naming the unknown keys and a few valid ones.
        """
        fixed = sorted(k for k in self.layer_widths if k in self._fixed)
        if fixed:
            raise ValueError(
                f"layer_widths of {model_name} names prediction convs {fixed}; their width is "
                "num_classes and cannot be overridden. Remove these keys."
            )
        unknown = sorted(k for k in self.layer_widths if k not in self._seen)
        if unknown:
            examples = list(self._seen)[:3]
            raise ValueError(
                f"layer_widths of {model_name} has keys that name no conv of this model: "
                f"{unknown}. Keys are full conv scopes without '/weights', e.g. {examples}; "
                "see model.named_layers() for all of them."
            )
