"""Training, export and conversion of the Deep Knowledge Tracing SavedModel.

Nothing here is needed at serve time: the Go worker loads the exported SavedModel.
"""
import os

# The origin model uses tf.compat.v1.nn.rnn_cell.LSTMCell, which TF 2.16+ only
# provides through legacy Keras (tf-keras); Keras 3 raises "not available".
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
