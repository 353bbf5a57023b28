"""The origin's TensorFlowDKT graph, reproduced in TF1 style.

Stacked LSTMCell layers with output dropout, dynamic_rnn over the real sequence
lengths, one dense output layer W/b, pred_all = sigmoid(logits), loss on the logits
gathered at target_id. One deliberate fix: the origin sums the loss over padded steps
too (their target_id is 0, so padding trains skill 0 towards "incorrect"); here a
mask keeps padded steps and each sequence's last step (which has no next answer)
out of the loss.
"""
from . import __name__ as _pkg  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
import tensorflow as tf

v1 = tf.compat.v1

# Names of the "predict" signature (GUIDE §1); the Go worker maps tensors by these keys.
SIGNATURE = "predict"
INPUTS = ("input_x", "target_id", "max_steps", "sequence_len", "keep_prob", "batch_size")
OUTPUT = "pred_all"


class TensorFlowDKT:
    def __init__(self, num_skills, hidden_neurons=(200,), learning_rate=0.01, max_grad_norm=5.0, training=True,
                 seed=42):
        self.num_skills = num_skills
        input_size = 2 * num_skills
        self.input_x = v1.placeholder(tf.float32, [None, None, input_size], name="input_x")
        self.target_id = v1.placeholder(tf.int32, [None, None], name="target_id")
        self.target_correctness = v1.placeholder(tf.float32, [None, None], name="target_correctness")
        self.loss_mask = v1.placeholder_with_default(
            tf.ones_like(self.target_correctness), [None, None], name="loss_mask")
        self.max_steps = v1.placeholder(tf.int32, [], name="max_steps")
        self.sequence_len = v1.placeholder(tf.int32, [None], name="sequence_len")
        self.keep_prob = v1.placeholder(tf.float32, [], name="keep_prob")
        self.batch_size = v1.placeholder(tf.int32, [], name="batch_size")

        # Stacked LSTM layers with output dropout. The origin wraps each cell in
        # DropoutWrapper(output_keep_prob) inside one MultiRNNCell; here each layer
        # is its own dynamic_rnn and the same per-step, per-unit dropout is applied
        # to its whole output sequence. The model is the same, but the random
        # masks are drawn outside the RNN's while loop, whose parallel iterations
        # would otherwise draw them in a varying order and make training
        # irreproducible.
        states = self.input_x
        for i, size in enumerate(hidden_neurons):
            # Explicit seeds: legacy Keras cells ignore the graph-level seed.
            cell = v1.nn.rnn_cell.LSTMCell(num_units=size, state_is_tuple=True,
                                           initializer=v1.glorot_uniform_initializer(seed=seed + i))
            with v1.variable_scope(f"layer_{i}"):
                states, _ = v1.nn.dynamic_rnn(cell, states, sequence_length=self.sequence_len,
                                              initial_state=cell.zero_state(self.batch_size, tf.float32))
            states = tf.nn.dropout(states, rate=1.0 - self.keep_prob, seed=seed + 100 + i)

        hidden = hidden_neurons[-1]
        w = v1.get_variable("W", [hidden, num_skills], initializer=v1.glorot_uniform_initializer(seed=seed + 200))
        b = v1.get_variable("b", [num_skills], initializer=v1.zeros_initializer())
        flat_states = tf.reshape(states, [self.batch_size * self.max_steps, hidden])
        logits = tf.matmul(flat_states, w) + b
        self.pred_all = tf.sigmoid(
            tf.reshape(logits, [self.batch_size, self.max_steps, num_skills]), name="pred_all")

        # Gather each step's logit at the skill answered next (target_id).
        flat_logits = tf.reshape(logits, [-1])
        base = tf.range(self.batch_size * self.max_steps) * num_skills
        target_logits = tf.gather(flat_logits, base + tf.reshape(self.target_id, [-1]))
        self.pred = tf.sigmoid(tf.reshape(target_logits, [-1, self.max_steps]), name="pred")
        losses = tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.reshape(self.target_correctness, [-1]), logits=target_logits)
        mask = tf.reshape(self.loss_mask, [-1])
        self.loss = tf.reduce_sum(losses * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

        if not training:
            # The exported graph holds inference only: no optimizer slots or gradient ops.
            return
        self.global_step = v1.train.get_or_create_global_step()
        optimizer = v1.train.AdamOptimizer(learning_rate)
        grads, variables = zip(*optimizer.compute_gradients(self.loss))
        grads, _ = tf.clip_by_global_norm(grads, max_grad_norm)
        self.train_op = optimizer.apply_gradients(zip(grads, variables), global_step=self.global_step)

    def feed(self, padded, keep_prob, with_targets=False):
        feed = {
            self.input_x: padded["input_x"],
            self.target_id: padded["target_id"],
            self.max_steps: padded["max_steps"],
            self.sequence_len: padded["sequence_len"],
            self.keep_prob: keep_prob,
            self.batch_size: padded["batch_size"],
        }
        if with_targets:
            feed[self.target_correctness] = padded["target_correct"]
            feed[self.loss_mask] = padded["mask"]
        return feed

    def signature_tensors(self):
        inputs = {name: getattr(self, name) for name in INPUTS}
        return inputs, {OUTPUT: self.pred_all}
