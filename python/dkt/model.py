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

# Names of the "predict" signature; the Go worker maps tensors by these keys.
SIGNATURE = "predict"
INPUTS = ("input_x", "target_id", "max_steps", "sequence_len", "keep_prob", "batch_size")
OUTPUT = "pred_all"

# The compact signatures exported next to "predict" (same weights, same graph).
# predict_ids takes skill ids and correctness instead of the [B, T, 2S] one-hot;
# step advances carried LSTM state by one interaction (event mode).
IDS_SIGNATURE = "predict_ids"
IDS_INPUTS = ("skill_id", "correct", "sequence_len")
STEP_SIGNATURE = "step"
STEP_OUTPUT = "mastery"
# chunk advances carried state by up to C interactions per row (long histories
# in pieces, many students per block): the worker fetches only the outputs a
# job reads, and TensorFlow prunes the rest of the graph.
CHUNK_SIGNATURE = "chunk"
CHUNK_INPUTS = ("skill_id", "correct", "next_skill", "sequence_len")
CHUNK_OUTPUTS = ("mastery", "next_prob", OUTPUT)


def state_keys(layer):
    """Signature keys of one layer's carried LSTM state (c, h): the same key in step's inputs and outputs."""
    return f"state_c_{layer}", f"state_h_{layer}"


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
        self.layers = []  # (kernel, bias, units) per LSTM layer, for the compact signatures
        for i, size in enumerate(hidden_neurons):
            # Explicit seeds: legacy Keras cells ignore the graph-level seed.
            cell = v1.nn.rnn_cell.LSTMCell(num_units=size, state_is_tuple=True,
                                           initializer=v1.glorot_uniform_initializer(seed=seed + i))
            with v1.variable_scope(f"layer_{i}"):
                states, _ = v1.nn.dynamic_rnn(cell, states, sequence_length=self.sequence_len,
                                              initial_state=cell.zero_state(self.batch_size, tf.float32))
            kernel, bias = sorted(cell.trainable_weights, key=lambda v: "bias" in v.name)
            self.layers.append((kernel, bias, size))
            states = tf.nn.dropout(states, rate=1.0 - self.keep_prob, seed=seed + 100 + i)

        hidden = hidden_neurons[-1]
        w = v1.get_variable("W", [hidden, num_skills], initializer=v1.glorot_uniform_initializer(seed=seed + 200))
        b = v1.get_variable("b", [num_skills], initializer=v1.zeros_initializer())
        self.w, self.b = w, b
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

    def signatures(self):
        """Every exported signature: name -> (inputs, outputs)."""
        with v1.name_scope(IDS_SIGNATURE):
            ids = ids_signature(self.layers, self.w, self.b, self.num_skills)
        with v1.name_scope(STEP_SIGNATURE):
            step = step_signature(self.layers, self.w, self.b, self.num_skills)
        with v1.name_scope(CHUNK_SIGNATURE):
            chunk = chunk_signature(self.layers, self.w, self.b, self.num_skills)
        return {SIGNATURE: self.signature_tensors(), IDS_SIGNATURE: ids, STEP_SIGNATURE: step, CHUNK_SIGNATURE: chunk}


# The compact signatures compute exactly the LSTMCell of the origin graph
# (gates i, j, f, o; forget bias 1; tanh), with one change of arithmetic: the
# first layer's input projection one_hot(skill + S·correct) @ kernel[:2S] is the
# kernel row at that index, so it is gathered instead of multiplied. That drops
# the [B, T, 2S] float input and about half the FLOPs of a step.
FORGET_BIAS = 1.0


def lstm_step(projected, c, h, recurrent_kernel, bias):
    """One LSTMCell step given the input's projection x @ kernel[:input_size]."""
    z = tf.nn.bias_add(projected + tf.matmul(h, recurrent_kernel), bias)
    i, j, f, o = tf.split(z, 4, axis=1)
    c = tf.sigmoid(f + FORGET_BIAS) * c + tf.sigmoid(i) * tf.tanh(j)
    return c, tf.sigmoid(o) * tf.tanh(c)


def project_inputs(layer, kernel, x, num_skills):
    """x @ kernel[:input_size]: a row gather of interaction ids for the first layer, a matmul after."""
    if layer == 0:
        return tf.gather(kernel[: 2 * num_skills], x)
    return tf.matmul(x, kernel[: x.shape[-1]])


def interaction_ids(skill_id, correct, num_skills):
    """The origin's one-hot index skill + S·correct."""
    return skill_id + num_skills * correct


def ids_signature(layers, w, b, num_skills):
    """predict_ids: pred_all [B, T, S] from skill_id/correct [B, T] and sequence_len [B]."""
    skill_id = v1.placeholder(tf.int32, [None, None], name="skill_id")
    correct = v1.placeholder(tf.int32, [None, None], name="correct")
    sequence_len = v1.placeholder(tf.int32, [None], name="sequence_len")
    batch, steps = tf.shape(skill_id)[0], tf.shape(skill_id)[1]
    # Like dynamic_rnn over sequence_len: outputs past a row's length are zero.
    real = tf.sequence_mask(sequence_len, steps, dtype=tf.float32)[:, :, None]
    outputs = interaction_ids(skill_id, correct, num_skills)  # [B, T]
    for layer, (kernel, bias, units) in enumerate(layers):
        if layer == 0:
            projected = project_inputs(0, kernel, outputs, num_skills)  # [B, T, 4H]
        else:
            flat = tf.reshape(outputs, [batch * steps, outputs.shape[-1]])
            projected = tf.reshape(project_inputs(layer, kernel, flat, num_skills), [batch, steps, 4 * units])
        recurrent = kernel[kernel.shape[0] - units:]

        def advance(state, x, recurrent=recurrent, bias=bias):
            return lstm_step(x, state[0], state[1], recurrent, bias)

        zero = tf.zeros([batch, units])
        _, hs = tf.scan(advance, tf.transpose(projected, [1, 0, 2]), initializer=(zero, zero))
        outputs = tf.transpose(hs, [1, 0, 2]) * real  # [B, T, H]
    hidden = layers[-1][2]
    logits = tf.matmul(tf.reshape(outputs, [batch * steps, hidden]), w) + b
    pred_all = tf.sigmoid(tf.reshape(logits, [batch, steps, num_skills]), name="pred_all")
    return {"skill_id": skill_id, "correct": correct, "sequence_len": sequence_len}, {OUTPUT: pred_all}


def step_signature(layers, w, b, num_skills):
    """step: one interaction per row applied to carried state; new state and mastery [B, S].

    Zero state is a student with no history, so mastery after the first step
    equals pred_all[:, 0, :] of predict."""
    skill_id = v1.placeholder(tf.int32, [None], name="skill_id")
    correct = v1.placeholder(tf.int32, [None], name="correct")
    inputs = {"skill_id": skill_id, "correct": correct}
    outputs = {}
    x = interaction_ids(skill_id, correct, num_skills)
    for layer, (kernel, bias, units) in enumerate(layers):
        c_key, h_key = state_keys(layer)
        c = v1.placeholder(tf.float32, [None, units], name=c_key)
        h = v1.placeholder(tf.float32, [None, units], name=h_key)
        inputs[c_key], inputs[h_key] = c, h
        recurrent = kernel[kernel.shape[0] - units:]
        c, h = lstm_step(project_inputs(layer, kernel, x, num_skills), c, h, recurrent, bias)
        outputs[c_key], outputs[h_key] = tf.identity(c, name="new_" + c_key), tf.identity(h, name="new_" + h_key)
        x = h
    outputs[STEP_OUTPUT] = tf.sigmoid(tf.matmul(x, w) + b, name=STEP_OUTPUT)
    return inputs, outputs


def chunk_signature(layers, w, b, num_skills):
    """chunk: up to C interactions per row applied to carried state, with predict_ids' arithmetic.

    Inputs: state_c_i/state_h_i [B, H_i] per layer (zeros: no history), skill_id,
    correct and next_skill [B, C] (next_skill: the skill answered right after each
    step, 0 when there is none), sequence_len [B] (real steps of this chunk).
    The new state is the state after each row's last real step (steps at
    t >= sequence_len are computed like predict_ids' padding but never reach it),
    so a history cut into chunks with the state carried between them gives
    predict's numbers. Outputs: the new state,
    mastery [B, S] at each row's last real step, next_prob [B, C] (the probability
    of a correct answer on next_skill) and pred_all [B, C, S]."""
    skill_id = v1.placeholder(tf.int32, [None, None], name="skill_id")
    correct = v1.placeholder(tf.int32, [None, None], name="correct")
    next_skill = v1.placeholder(tf.int32, [None, None], name="next_skill")
    sequence_len = v1.placeholder(tf.int32, [None], name="sequence_len")
    inputs = {"skill_id": skill_id, "correct": correct, "next_skill": next_skill, "sequence_len": sequence_len}
    outputs = {}
    batch, steps = tf.shape(skill_id)[0], tf.shape(skill_id)[1]
    real = tf.sequence_mask(sequence_len, steps, dtype=tf.float32)[:, :, None]
    # The state after each row's last real step is picked from the scan's
    # stacked states once, after the loop, rather than by masking every step
    # inside it: the loop is then predict_ids' own, with no per-step cost added.
    # A row of no real steps keeps the state it came with.
    last = tf.stack([tf.maximum(sequence_len - 1, 0), tf.range(batch)], axis=1)  # [B, 2] into [C, B, H]
    moved = (sequence_len > 0)[:, None]
    x = interaction_ids(skill_id, correct, num_skills)  # [B, C]
    last_h = None
    for layer, (kernel, bias, units) in enumerate(layers):
        c_key, h_key = state_keys(layer)
        c0 = v1.placeholder(tf.float32, [None, units], name=c_key)
        h0 = v1.placeholder(tf.float32, [None, units], name=h_key)
        inputs[c_key], inputs[h_key] = c0, h0
        if layer == 0:
            projected = project_inputs(0, kernel, x, num_skills)  # [B, C, 4H]
        else:
            flat = tf.reshape(x, [batch * steps, x.shape[-1]])
            projected = tf.reshape(project_inputs(layer, kernel, flat, num_skills), [batch, steps, 4 * units])
        recurrent = kernel[kernel.shape[0] - units:]

        def advance(state, x, recurrent=recurrent, bias=bias):
            return lstm_step(x, state[0], state[1], recurrent, bias)

        cs, hs = tf.scan(advance, tf.transpose(projected, [1, 0, 2]), initializer=(c0, h0))
        c_last = tf.where(moved, tf.gather_nd(cs, last), c0)
        last_h = tf.where(moved, tf.gather_nd(hs, last), h0)
        outputs[c_key] = tf.identity(c_last, name="new_" + c_key)
        outputs[h_key] = tf.identity(last_h, name="new_" + h_key)
        # Like predict_ids: outputs past a row's length are zero.
        x = tf.transpose(hs, [1, 0, 2]) * real  # [B, C, H]
    hidden = layers[-1][2]
    outputs[STEP_OUTPUT] = tf.sigmoid(tf.matmul(last_h, w) + b, name=STEP_OUTPUT)
    # The logit at the next skill only: a gather of W's columns and an H-wide
    # dot per step instead of the [H, S] matmul.
    w_next = tf.gather(tf.transpose(w), next_skill)  # [B, C, H]
    next_logit = tf.reduce_sum(x * w_next, axis=-1) + tf.gather(b, next_skill)
    outputs["next_prob"] = tf.sigmoid(next_logit, name="next_prob")
    logits = tf.matmul(tf.reshape(x, [batch * steps, hidden]), w) + b
    outputs[OUTPUT] = tf.sigmoid(tf.reshape(logits, [batch, steps, num_skills]), name=OUTPUT)
    return inputs, outputs
