"""The Edge TPU stage: the compiler's output parsed, its verdict predicted when it is absent."""
