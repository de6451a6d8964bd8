"""The Edge TPU compiler's own words for what happened to each op (its .log's Status column, compiler 14-16).

The static analysis speaks in these words too, so a predicted verdict and a real one read the same.
"""

MAPPED = "Mapped to Edge TPU"
MORE_THAN_ONE_SUBGRAPH = "More than one subgraph is not supported"
UNSPECIFIED_LIMITATION = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
NOT_SUPPORTED = "Operation not supported"
VERSION_NOT_SUPPORTED = "Operation version not supported"
UNSUPPORTED_DATA_TYPE = "Operation is working on an unsupported data type"
UNSUPPORTED_RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
NOT_CONSTANT = "Filter, bias, or other param is not constant at compile-time"

# Not a status of the compiler's .log: when it cannot parse the model it writes no log and maps nothing. The
# static analysis gives this to every op of such a model but the ones whose version it cannot parse.
MODEL_NOT_PARSED = "Not compiled: the compiler cannot parse this model (an op version it does not know)"

ALL = (
    MAPPED,
    MORE_THAN_ONE_SUBGRAPH,
    UNSPECIFIED_LIMITATION,
    NOT_SUPPORTED,
    VERSION_NOT_SUPPORTED,
    UNSUPPORTED_DATA_TYPE,
    UNSUPPORTED_RANK,
    NOT_CONSTANT,
)
