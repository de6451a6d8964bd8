"""The Edge TPU's hardware figures, as Coral documents them and as the real compiler reports them.

Only what the chip and its links are; how the cost model turns them into milliseconds lives in latency.py, and what
the compiler maps in analysis.py.
"""

MIB = 1024 * 1024

# On-chip parameter cache USABLE by a model's parameters, as compiler 16 reports it: "On-chip memory used for caching
# model parameters" + "... remaining ..." of two public compiler-16 runs whose activations are small:
#   6.02 MiB + 1.02 MiB = 7.04 MiB  (tests/edgetpu/logs/segmented_16.0_stdout.txt, google-coral/edgetpu issue 557)
#   5.90 MiB + 1.16 MiB = 7.06 MiB  (tests/edgetpu/logs/search_delegate_16.0_stdout.txt, WongKinYiu/yolov7 PR 1672)
# Coral's documentation says "about 8 MB" of SRAM (FACTS.md): the rest holds activations and the executable. A
# third compiler-16 log (mobilenetv3_16.0_stdout.txt, edgetpu issue 572: 604.5 KiB + 511.5 KiB) shows large
# activations can take far more of it; that is not modelled. Parameters beyond this stream on every inference.
ON_CHIP_CACHE_BYTES = round(7.05 * MIB)
# Peak throughput: 4 TOPS, i.e. 2e12 multiply-accumulates per second (one MAC = two operations).
PEAK_MACS_PER_SECOND = 2e12
# The systolic array: 64x64 MAC cells (4096 MACs x 480 MHz ~ 2e12 MAC/s = 4 TOPS).
ARRAY_SIDE = 64

# The links' payload ceilings, the upper bounds of the fitted bandwidths (nothing crosses a link faster):
# - USB Accelerator: "USB 3.0 (USB 3.1 Gen 1) Type-C socket" (https://coral.ai/docs/accelerator/datasheet/):
#   5 Gbit/s signalling with 8b/10b encoding, 500 MB/s of payload at most.
# - PCIe: the M.2 and Mini PCIe Accelerators are "PCIe Gen2 x1" (https://coral.ai/docs/m2/datasheet/,
#   https://coral.ai/docs/mini-pcie/datasheet/), 5 GT/s with 8b/10b, 500 MB/s; the Dev Board's SoM reaches its
#   Edge TPU through the same PCIe driver (libedgetpu's `pci` device, FACTS.md).
USB3_PAYLOAD_BYTES_PER_SECOND = 500e6
PCIE_GEN2_X1_PAYLOAD_BYTES_PER_SECOND = 500e6
