"""The int8 quantization of image inputs, shared by the quantizer and the exporters (a leaf module).

Images enter every network as RGB floats in [0, 1]; quantized with scale 1/255 and zero point -128,
an 8-bit pixel ``p`` is exactly ``p - 128``. The scale is rounded to float32 here because the
quantized graph stores it as float32 and the TFLite converter requires the input's quantize and the
ops after it to carry the very same scale (a float64 1/255 next to the float32 one is refused as a
"same scale constraint" violation).
"""

import struct

PIXEL_SCALE: float = struct.unpack("f", struct.pack("f", 1 / 255))[0]
PIXEL_ZERO_POINT: int = -128
