"""DepthMotionModel: the training step of METHOD.md §1 as a Keras model.

``train_step`` reads like the method: depth for both frames in one call, motion
for both orders in one call, the full translation field, the intrinsics, all
losses for both directions in one batched pass, a guarded Adam update.
"""
import dataclasses

import keras
import tensorflow as tf

from depth_motion_tf import field_projection, geometry, networks, visualize
from depth_motion_tf.losses import DepthMotionLosses, LossWeights
from depth_motion_tf.networks import DepthNet, MotionNet

INTRINSICS_MODES = ("given", "learned", "learned_per_video")
RIGID_MOTION_MODES = ("antisymmetric", "independent")
EGOMOTION_MODES = ("learned", "given")
RESIDUAL_FIELD_MODES = ("free", "unexplained")
FIELD_INPUT_MODES = ("frames", "rigid_warp")
FIELD_NETWORK_MODES = ("shared", "separate")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


class DepthMotionModel(keras.Model):
    """Depth and motion networks trained jointly from frame pairs.

    Call it on ``[B, H, W, 3]`` images in [0, 1] to get depth ``[B, H, W, 1]``.
    ``train_step`` / ``test_step`` take batches from ``depth_motion_tf.data``.
    """

    def __init__(
        self,
        height=128,
        width=416,
        loss_weights=LossWeights(),
        sparsity="l1_2",
        intrinsics_mode="given",
        num_videos=1,
        rigid_motion="antisymmetric",
        egomotion="learned",
        cascade=True,
        motion_depth_normalization=False,
        residual_field="free",
        field_input="frames",
        field_network="shared",
        auto_mask=True,
        use_mask=False,
        foreground_dilation=8,
        learn_depth_scale=False,
        num_scales=1,
        scale_normalization=False,
        target_depth_stop_gradient=True,
        noise_rampup_steps=10000,
        field_burnin_steps=20000,
        clip_norm=10.0,
        summary_every=100,
        jit_compile_step=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_choice("intrinsics_mode", intrinsics_mode, INTRINSICS_MODES)
        _check_choice("rigid_motion", rigid_motion, RIGID_MOTION_MODES)
        _check_choice("egomotion", egomotion, EGOMOTION_MODES)
        _check_choice("residual_field", residual_field, RESIDUAL_FIELD_MODES)
        _check_choice("field_input", field_input, FIELD_INPUT_MODES)
        _check_choice("field_network", field_network, FIELD_NETWORK_MODES)
        if field_input == "rigid_warp" and field_network == "shared":
            raise ValueError("field_input=rigid_warp needs field_network=separate (the warp uses "
                             "the motion net's camera motion, so a second network makes the field)")
        if field_input == "rigid_warp" and egomotion == "given":
            raise ValueError("field_input=rigid_warp needs egomotion=learned (inference has no "
                             "poses to warp by)")
        self.height, self.width = height, width
        self.intrinsics_mode = intrinsics_mode
        self.rigid_motion = rigid_motion
        self.egomotion = egomotion
        self.clip_norm = clip_norm
        self.cascade = cascade
        if motion_depth_normalization and not cascade:
            raise ValueError("motion_depth_normalization needs cascade (the motion net's depth input)")
        self.motion_depth_normalization = motion_depth_normalization
        self.residual_field = residual_field
        self.field_input = field_input
        self.field_network = field_network
        self.use_mask = use_mask
        self.foreground_dilation = foreground_dilation
        self.summary_every = summary_every
        self.depth_net = DepthNet(
            learn_scale=learn_depth_scale, noise_rampup_steps=noise_rampup_steps
        )
        # The auto-mask acts on the field the warp uses: in ``unexplained`` mode, the projected one.
        self.auto_mask = auto_mask
        net_auto_mask = auto_mask and residual_field == "free"
        self.motion_net = MotionNet(
            auto_mask=net_auto_mask, field_burnin_steps=field_burnin_steps,
            with_field=field_network == "shared",
        )
        if field_network == "separate":
            # Its translation scale multiplies only the field: learned, it would switch it off
            # (docs/learning.md), so it is held at its initial value.
            self.field_net = MotionNet(
                auto_mask=net_auto_mask, field_burnin_steps=field_burnin_steps,
                learn_translation_scale=False, name="field_net",
            )
        self.compute_losses = DepthMotionLosses(
            loss_weights, sparsity=sparsity, num_scales=num_scales,
            scale_normalization=scale_normalization,
            target_depth_stop_gradient=target_depth_stop_gradient,
        )
        if intrinsics_mode == "learned_per_video":
            self.video_intrinsics = self.add_weight(
                shape=(num_videos, 4),
                initializer=keras.initializers.Constant([1.0, 1.0, 0.5, 0.5]),
                name="video_intrinsics",
            )
        counter = dict(trainable=False, dtype=tf.int64,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.bad_steps = tf.Variable(0, name="bad_steps", **counter)
        self.consecutive_bad_steps = tf.Variable(0, name="consecutive_bad_steps", **counter)
        active = [n for n, w in dataclasses.asdict(loss_weights).items() if w] + ["total"]
        self._trackers = {name: keras.metrics.Mean(name=name) for name in active}
        self._losses_and_gradients = tf.function(
            self._losses_and_gradients_eager, jit_compile=jit_compile_step
        )

    # ---------------------------------------------------------------- inference
    def call(self, images, training=False):
        """Depth ``[B, H, W, 1]`` float32 for images ``[B, H, W, 3]`` in [0, 1]."""
        return self.depth_net(images, training=training)

    def build(self, input_shape=None):
        """Creates every variable with one dummy pass of both networks and the losses."""
        del input_shape
        self.forward(
            {
                "rgb": tf.zeros([1, 2, self.height, self.width, 3]),
                "intrinsics": tf.eye(3, batch_shape=[1]),
                "intrinsics_map": identity_intrinsics_map()[None],
                "video_index": tf.zeros([1], tf.int32),
                "rotation": tf.zeros([1, 3]),
                "translation": tf.zeros([1, 3]),
                "mask": tf.zeros([1, 2, self.height, self.width, 1]),
                "depth": tf.zeros([1, 2, self.height, self.width, 1]),  # all missing
            },
            training=False,
            step=None,  # fully on, so that every layer is built
        )
        self.built = True

    def build_for_training(self):
        """Builds the model (call inside the strategy scope, before ``fit``)."""
        self(tf.zeros([1, self.height, self.width, 3]))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' pre-``fit`` build, skipped once the model and optimizer are built.

        Keras would first average a batch across replicas to trace the model,
        which MultiWorkerMirroredStrategy cannot do for a dict batch; here
        ``build_for_training`` has already created every variable.
        """
        if not (self.built and self.optimizer is not None and self.optimizer.built):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def predict_motion(self, image1, image2, intrinsics=None, step=None):
        """Motion 1→2 for inference, with the rigid-motion parametrisation of training.

        Args:
            image1, image2: ``[B, H, W, 3]`` float32 in [0, 1].
            intrinsics: optional ``[B, 3, 3]``; learned ones are returned otherwise.
            step: scalar int (tensor), the training step whose motion-field burn-in
                weight applies (an export passes its checkpoint's step); None: fully on.
        Returns:
            dict ``rotation`` ``[B, 3]`` rad, ``translation`` ``[B, 3]``,
            ``residual_translation`` ``[B, H, W, 3]``, ``intrinsics`` ``[B, 3, 3]``,
            ``depth`` ``[B, H, W, 1]`` (of image1). With ``egomotion="given"`` the
            rigid motion head was not trained and its output is not meaningful.
        """
        batch = tf.shape(image1)[0]
        depth = self.depth_net(tf.concat([image1, image2], 0))
        images = tf.concat([image1, image2], 0)
        motion = self._motion(self.motion_net, images, depth, training=False, step=step)
        rotation, translation = self._learned_rigid_motion(motion)
        pair_k = _average_directions(motion["intrinsics"])
        both_k = pair_k if intrinsics is None else tf.concat([intrinsics, intrinsics], 0)
        field = self._raw_field(motion, images, depth, rotation, translation, both_k,
                                training=False, step=step)
        residual = self._residual_field(field, depth, rotation, translation, both_k)
        return {
            "rotation": rotation[:batch],
            "translation": translation[:batch],
            "residual_translation": residual[:batch],
            "intrinsics": pair_k[:batch] if intrinsics is None else intrinsics,
            "depth": depth[:batch],
        }

    # ------------------------------------------------------------ the method
    def forward(self, batch, training, step):
        """Both networks and all losses for both directions (METHOD.md §1).

        Args:
            batch: dict from ``depth_motion_tf.data`` (``rgb`` ``[B, 2, H, W, 3]``, ...).
            training: enables the layer-norm noise.
            step: scalar int64, the optimizer step (drives the schedules).
        Returns:
            ``(losses, extras)`` from ``DepthMotionLosses`` plus ``depth``,
            ``residual_translation``, ``intrinsics`` and ``rgb`` in ``extras``.
        """
        images = _both_directions(batch["rgb"])  # [2B]: sources of 1→2, then of 2→1
        depth = self.depth_net(images, training=training, step=step)
        motion = self._motion(self.motion_net, images, depth, training=training, step=step)
        rotation, background = self._rigid_motion(batch, motion)
        intrinsics = self._intrinsics(batch, motion["intrinsics"])
        field = self._raw_field(motion, images, depth, rotation, background, intrinsics,
                                training=training, step=step)
        residual = self._residual_field(field, depth, rotation, background, intrinsics)
        if self.use_mask:
            residual = residual * self._foreground(batch["mask"])
        translation = background[:, None, None, :] + residual  # T = t_bg + T_res
        losses, extras = self.compute_losses(
            images,
            _swap_directions(images),
            depth,
            _swap_directions(depth),
            rotation,
            translation,
            residual,
            intrinsics,
            gt_depth=_both_directions(batch["depth"]) if "depth" in batch else None,
        )
        extras.update(
            depth=depth, residual_translation=residual, intrinsics=intrinsics, rgb=images,
            rotation=rotation, background_translation=background,
        )
        return losses, extras

    def _rigid_motion(self, batch, motion):
        """``(rotation, translation)`` ``[2B, 3]`` each: both directions' camera motion.

        ``egomotion="given"``: the dataset's ground-truth motion 1→2 and its exact
        inverse for 2→1; otherwise the motion net's, by ``rigid_motion``.
        """
        if self.egomotion == "given":
            return _with_inverse(batch["rotation"], batch["translation"])
        return self._learned_rigid_motion(motion)

    def _learned_rigid_motion(self, motion):
        """The motion net's rigid motion of both directions, by ``rigid_motion``."""
        rotation, translation = motion["rotation"], motion["background_translation"]
        if self.rigid_motion == "antisymmetric":
            return antisymmetric_motion(rotation, translation)
        return rotation, translation

    def _residual_field(self, field, depth, rotation, translation, intrinsics):
        """The residual field ``[2B, H, W, 3]`` the warp uses, by ``residual_field``.

        ``free`` (the paper's): the motion net's field as it is (auto-masked there,
        if on); ``unexplained``: only what no depth change or small camera motion
        produces (:func:`field_projection.unexplained_motion`), then auto-masked (if on).
        """
        if self.residual_field == "free":
            return field
        field = field_projection.unexplained_motion(field, depth, rotation, translation, intrinsics)
        return networks.auto_mask(field) if self.auto_mask else field

    def _raw_field(self, motion, images, depth, rotation, translation, intrinsics, training, step):
        """The residual field ``[2B, H, W, 3]`` before ``residual_field``'s projection.

        ``field_network="shared"`` (the paper's): the motion net's own field.
        ``"separate"``: the field net's, given the frame pairs and depths
        (``field_input="frames"``) and with ``field_input="rigid_warp"``, as 3
        more channels, the other frame rigidly warped onto each source frame by
        ``depth``, ``rotation``, ``translation`` and ``intrinsics``
        (:func:`geometry.rigid_warp`, no gradient through it), so that what the
        camera motion does not align is in plain view.
        """
        if self.field_network == "shared":
            return motion["residual_translation"]

        def field_fn():
            cue = None
            if self.field_input == "rigid_warp":
                warped = geometry.rigid_warp(_swap_directions(images), depth, rotation,
                                             translation, intrinsics)
                cue = tf.stop_gradient(warped)
            field_motion = self._motion(self.field_net, images, depth, training=training,
                                        step=None, cue=cue)
            return field_motion["residual_translation"]

        # During the burn-in neither the field net nor the warp runs.
        return self.field_net.burned_in(field_fn, images, step)

    def _motion(self, net, images, depth, training, step, cue=None):
        """A motion net's (``motion_net``'s or ``field_net``'s) outputs for the ``[2B]`` rows.

        With ``motion_depth_normalization`` the depths enter divided by their
        pair's mean depth ``s`` (the same for both directions) and the
        translations come out multiplied by ``s``: scaling a pair's depths by
        ``c`` then scales its translations by ``c``, and the warp is unchanged.
        """
        if not self.motion_depth_normalization:
            return net(self._motion_input(images, depth, cue), training=training, step=step)
        scale = pair_mean_depth(depth)  # [2B, 1, 1, 1]
        motion = net(self._motion_input(images, depth / scale, cue), training=training, step=step)
        motion = dict(motion, background_translation=motion["background_translation"] * scale[:, 0, 0])
        if "residual_translation" in motion:
            motion["residual_translation"] = motion["residual_translation"] * scale
        return motion

    def _motion_input(self, images, depth, cue=None):
        """``[2B, H, W, 8]`` (RGB, depth, RGB, depth) or ``[2B, H, W, 6]`` without cascade,
        followed by the ``cue`` channels if given."""
        other_images, other_depth = _swap_directions(images), _swap_directions(depth)
        if self.cascade:
            channels = [images, depth, other_images, other_depth]
        else:
            channels = [images, other_images]
        return tf.concat(channels + ([] if cue is None else [cue]), -1)

    def field_variables(self):
        """The trainable variables used only by the residual field (zero gradients while inactive)."""
        if self.field_network == "shared":
            return self.motion_net.field_variables()
        return self.field_net.trainable_variables

    def field_active(self, step):
        """Scalar bool: whether the residual field is computed at ``step``, by ``field_network``."""
        net = self.motion_net if self.field_network == "shared" else self.field_net
        return net.field_active(step)

    def _foreground(self, mask):
        """Source-frame foreground masks ``[2B, H, W, 1]`` dilated by ``foreground_dilation`` px."""
        masks = _both_directions(mask)
        size = 2 * self.foreground_dilation + 1
        return tf.nn.max_pool2d(masks, size, strides=1, padding="SAME")

    def _intrinsics(self, batch, predicted):
        """``[2B, 3, 3]`` intrinsics of both directions, by ``intrinsics_mode``."""
        if self.intrinsics_mode == "learned":
            return _average_directions(predicted)
        if self.intrinsics_mode == "learned_per_video":
            params = tf.gather(self.video_intrinsics, batch["video_index"])
            full_frame_k = geometry.per_video_intrinsics(params, self.height, self.width)
            # The learned K is the full frame's; the augmentation's map takes it to this crop.
            mapping = batch.get("intrinsics_map")
            if mapping is None:  # a batch that was not augmented
                mapping = identity_intrinsics_map()
            k = geometry.apply_intrinsics_map(mapping, full_frame_k)
        else:
            k = tf.cast(batch["intrinsics"], tf.float32)
        return tf.concat([k, k], 0)

    # ------------------------------------------------------------ training
    def _losses_and_gradients_eager(self, batch, step):
        """Per-replica losses, extras and gradients of the replica-averaged total."""
        with tf.GradientTape() as tape:
            losses, extras = self.forward(batch, training=True, step=step)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            objective = losses["total"] / tf.cast(replicas, tf.float32)
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                objective = self.optimizer.scale_loss(objective)
        gradients = tape.gradient(objective, self.trainable_variables)
        return losses, extras, gradients

    def _clip_global_norm(self, gradients):
        """Scales this replica's gradients so that their sum over replicas has norm ≤ ``clip_norm``.

        The reference clips the whole gradient by its global norm; under a
        strategy the whole gradient is the sum of the replicas' parts, so the
        norm is taken of that sum (Keras' ``global_clipnorm`` would clip each
        part before the sum). Gradients within the norm, or with a non-finite
        norm (a step that is skipped), are returned as they are, unscaled.

        Returns:
            (gradients, norm): the list (``None`` kept), and the scalar float32
            global norm of the summed, unscaled gradient: non-finite iff some
            gradient is (or the norm overflows float32, beyond 1e19).
        """
        present = [g for g in gradients if g is not None]
        context = tf.distribute.get_replica_context()
        summed = present
        if context is not None and context.num_replicas_in_sync > 1:
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
        norm = tf.linalg.global_norm(summed)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            norm /= tf.cast(self.optimizer.dynamic_scale, norm.dtype)

        def scaled():
            scale = self.clip_norm / norm
            return [g * tf.cast(scale, g.dtype) for g in present]

        # A cond, not a multiply by 1: each multiply is a pass over all 58M gradient values.
        present = tf.cond(tf.math.is_finite(norm) & (norm > self.clip_norm), scaled, lambda: present)
        present = iter(present)
        return [None if g is None else next(present) for g in gradients], norm

    def train_step(self, data):
        step = tf.convert_to_tensor(self.optimizer.iterations, tf.int64)
        losses, extras, gradients = self._losses_and_gradients(data, step)
        gradients, norm = self._clip_global_norm(gradients)  # a cross-replica sum: outside the XLA part
        finite = _all_replicas_finite([losses["total"], norm])
        self._apply_if_finite(gradients, finite, step)
        self._write_summaries(losses, extras, step)
        return self._update_trackers(losses)

    def test_step(self, data):
        step = tf.convert_to_tensor(self.optimizer.iterations, tf.int64)
        losses, _ = self.forward(data, training=False, step=step)
        return self._update_trackers(losses)

    def _apply_if_finite(self, gradients, finite, step):
        """Adam update when ``finite``; otherwise no update and a counted bad step.

        While the residual field is inactive (burn-in), its variables get zero
        gradients and Adam leaves them and their zero moments unchanged, so the
        update skips them: the same result, without a third of the update's
        cost. Under a strategy that needs merge calls, the conditions are taken
        in cross-replica context (a replica-context cond cannot hold a merge call).
        """
        pairs = [(g, v) for g, v in zip(gradients, self.trainable_variables) if g is not None]
        gradients, variables = [g for g, _ in pairs], [v for _, v in pairs]
        field = {id(v) for v in self.field_variables()}
        awake = [i for i, v in enumerate(variables) if id(v) not in field]

        def count(is_finite):
            self.bad_steps.assign_add(tf.cast(~is_finite, tf.int64))
            self.consecutive_bad_steps.assign(
                tf.where(is_finite, tf.zeros_like(self.consecutive_bad_steps),
                         self.consecutive_bad_steps + 1)
            )

        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # The loss-scale optimizer skips non-finite steps itself (and lowers its scale).
            self.optimizer.apply(gradients, variables)
            count(finite)
            return

        def apply_all(grads):
            self.optimizer.apply(grads, variables)

        def apply_awake(grads):
            self.optimizer.apply([grads[i] for i in awake], [variables[i] for i in awake])

        field_on = self.field_active(step)
        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(
                finite,
                lambda: tf.cond(field_on, lambda: apply_all(gradients),
                                lambda: apply_awake(gradients)),
                lambda: None,
            )
        else:

            def cross_replica(strategy, finite_per_replica, field_per_replica, grads_per_replica):
                first = strategy.experimental_local_results(finite_per_replica)[0]
                on = strategy.experimental_local_results(field_per_replica)[0]
                each = lambda fn: strategy.extended.call_for_each_replica(  # noqa: E731
                    fn, args=(grads_per_replica,)
                )
                tf.cond(
                    first,
                    lambda: tf.cond(on, lambda: each(apply_all), lambda: each(apply_awake)),
                    lambda: None,
                )

            tf.distribute.get_replica_context().merge_call(
                cross_replica, args=(finite, field_on, gradients)
            )
        count(finite)

    def _update_trackers(self, losses):
        for name, value in losses.items():
            self._trackers[name].update_state(value)
        logs = {name: tracker.result() for name, tracker in self._trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras averages multi-worker logs along axis 0, which scalars lack.
            logs = {name: value[None] for name, value in logs.items()}
        return logs

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _write_summaries(self, losses, extras, step):
        """TensorBoard scalars and images every ``summary_every`` steps (no-op without a writer)."""
        with tf.summary.record_if(tf.equal(step % self.summary_every, 0)):
            self._scalar_summaries(losses, extras, step)
            self._image_summaries(extras, step)

    def _scalar_summaries(self, losses, extras, step):
        for name, value in losses.items():
            tf.summary.scalar(f"loss/{name}", value, step=step)
        tf.summary.scalar("learning_rate", self.optimizer.learning_rate, step=step)
        tf.summary.scalar("bad_steps", self.bad_steps, step=step)
        tf.summary.scalar("motion/rotation_scale", self.motion_net.rotation_scale, step=step)
        tf.summary.scalar("motion/translation_scale", self.motion_net.translation_scale, step=step)
        mean_k = tf.reduce_mean(geometry.intrinsics_vector(extras["intrinsics"]), 0)
        for name, value in zip(("fx", "fy", "cx", "cy"), tf.unstack(mean_k)):
            tf.summary.scalar(f"intrinsics/{name}", value, step=step)

    def _image_summaries(self, extras, step, count=2):
        """The first ``count`` rows only, so the per-step cost stays negligible."""
        images = {
            "frames": extras["rgb"][:count],
            "disparity": visualize.colorize_disparity(extras["depth"][:count]),
            "residual_motion": visualize.colorize_magnitude(
                extras["residual_translation"][:count]
            ),
            "depth_proximity_weight": extras["depth_proximity_weight"][:count],
        }
        for name, image in images.items():
            tf.summary.image(name, image, step=step, max_outputs=count)


def _both_directions(pair):
    """``[B, 2, ...]`` per-pair frames → ``[2B, ...]``: the sources of 1→2, then of 2→1."""
    return tf.concat([pair[:, 0], pair[:, 1]], 0)


def _swap_directions(x):
    """Rows ``[B:2B]`` then ``[0:B]``: the other direction of each pair."""
    half = tf.shape(x)[0] // 2
    return tf.concat([x[half:], x[:half]], 0)


def identity_intrinsics_map():
    """``[2, 4]``: the map of no augmentation (a function: no tensor at import, which would
    start TensorFlow's runtime before a multi-worker strategy can configure it)."""
    return geometry.intrinsics_map(tf.ones([4]), tf.zeros([4]))


def _with_inverse(rotation, translation):
    """``[B, 3]`` motions 1→2 → ``[2B, 3]``: 1→2, then its exact inverse 2→1."""
    inverse_rotation, inverse_translation = geometry.invert_motion(rotation, translation)
    return (
        tf.concat([rotation, inverse_rotation], 0),
        tf.concat([translation, inverse_translation], 0),
    )


def antisymmetric_motion(rotation, translation):
    """Rigid motion of both directions from the antisymmetric part of the raw outputs (METHOD.md §7).

    With ``f(x12)``, ``f(x21)`` the raw 6-vectors (angles, translation) for the
    two input orders, 1→2 is ``(f(x12) − f(x21)) / 2`` (to first order the
    average of the forward prediction and the inverse of the backward one) and
    2→1 is its exact inverse (``R21 = R12ᵀ``, ``t21 = −R12ᵀ t12``). Whatever the
    network outputs for both orders alike cancels exactly. (Averaging with the
    *exact* inverse of the backward prediction does not cancel it: a common
    rotation R turns a common translation t into ``(t − Rᵀ t) / 2 ≠ 0``, and
    trained that way the network predicted the same motion for both orders.)

    Args:
        rotation, translation: ``[2B, 3]`` raw outputs, rows ``0..B-1`` for the
            order (1, 2) and ``B..2B-1`` for (2, 1).
    Returns:
        ``(rotation, translation)`` ``[2B, 3]`` float32 each, the same layout.
    """
    half = tf.shape(rotation)[0] // 2
    return _with_inverse(
        (rotation[:half] - rotation[half:]) / 2.0, (translation[:half] - translation[half:]) / 2.0
    )


def pair_mean_depth(depth):
    """``[2B, 1, 1, 1]``: each pair's mean depth over both frames, the same in both directions.

    Args:
        depth: ``[2B, H, W, 1]`` depths, rows ``[0:B]`` frame 1 and ``[B:2B]`` frame 2 of each pair.
    """
    frame_mean = tf.reduce_mean(tf.cast(depth, tf.float32), axis=[1, 2, 3], keepdims=True)
    return (frame_mean + _swap_directions(frame_mean)) / 2.0


def _average_directions(k):
    """``(K(1→2) + K(2→1)) / 2`` for both halves of a ``[2B, 3, 3]`` batch."""
    return (k + _swap_directions(k)) / 2.0


def _all_replicas_finite(tensors):
    """True iff every tensor on every replica is finite (the same answer on all replicas).

    Called with the loss and the gradient's global norm, not the gradients
    themselves: the norm is non-finite iff a gradient is, and checking 58M
    values took 5% of a train step.
    """
    bad = tf.add_n(
        [tf.reduce_sum(tf.cast(~tf.math.is_finite(t), tf.float32)) for t in tensors if t is not None]
    )
    context = tf.distribute.get_replica_context()
    if context is not None:
        bad = context.all_reduce(tf.distribute.ReduceOp.SUM, bad)
    return tf.equal(bad, 0.0)
