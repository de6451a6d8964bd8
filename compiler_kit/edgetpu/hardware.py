"""The Edge TPU's hardware figures, as Coral documents them (see /work/shared/edgetpu/FACTS.md).

Only what the chip is; how the cost model turns it into milliseconds lives in latency.py, and what the compiler
maps in analysis.py.
"""

# On-chip parameter cache: "about 8 MB"; parameters beyond it stream from host memory on every inference.
ON_CHIP_CACHE_BYTES = 8 * 1024 * 1024
# Peak throughput: 4 TOPS, i.e. 2e12 multiply-accumulates per second (one MAC = two operations).
PEAK_MACS_PER_SECOND = 2e12
# The systolic array: 64x64 MAC cells (4096 MACs x 480 MHz ~ 2e12 MAC/s = 4 TOPS).
ARRAY_SIDE = 64
