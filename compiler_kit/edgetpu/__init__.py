"""The Edge TPU, one room per job: the compiler run (compiler.py) and its output parsed (log_parser.py), its verdict
predicted without it (analysis.py, reading the model with tflite_graph.py, in the compiler's words: statuses.py),
the latency cost model (latency.py), the runtime probed (runtime.py) and the chip's documented figures
(hardware.py). The build's stage that uses them is compiler_kit.stages.edgetpu."""
