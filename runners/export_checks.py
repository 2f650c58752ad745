"""``export.py``'s flag checks, made before TensorFlow is imported.

An unknown ``--formats`` entry or a malformed ``--input_shape`` / ``--pad_to_shape`` would
otherwise be reported only after the TensorFlow import and the checkpoint restore (about 10 s);
here it is one line in a fraction of a second. Nothing here imports TensorFlow
(``tests/test_bad_inputs.py`` checks it); :func:`runners.export.export_inference_graph` makes the
same checks again for callers that skip the script.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.deploy.export_options import check_formats, parse_export_shapes


def check_export_flags(
    formats: Sequence[str],
    input_shape: str | Sequence,
    pad_to_shape: str | Sequence | None,
    dynamic_input_size: bool = False,
) -> None:
    """Checks the export flags that need no config, model or checkpoint.

    Args:
      formats: ``--formats``, each one of :data:`core.deploy.export_options.FORMATS`.
      input_shape: ``--input_shape`` (``H,W,3``, ``N,H,W,3`` or ``-1,-1,3``).
      pad_to_shape: ``--pad_to_shape`` (``H,W``) or None.
      dynamic_input_size: ``--dynamic_input_size``.

    Raises:
      core.deploy.export_options.ExportError: names the flag, the bad value and the fix.
    """
    check_formats(formats)
    parse_export_shapes(input_shape, pad_to_shape, dynamic_input_size)
