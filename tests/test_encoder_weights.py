"""ImageNet initialisation of the depth encoder from the files users have (+ convert_weights).

The fixtures are fake ResNet-18s: random arrays under the real names and
shapes, written with the real libraries (a tf.compat.v1 graph and Saver for
the reference's TF1 checkpoint, safetensors for torchvision/timm, numpy for
ours). The expected name correspondences below are written out by hand, apart
from the code under test.
"""
import os
import pickle
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save_file
import tensorflow as tf

from depth_motion_tf import encoder_weights
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.networks import DepthNet

FILTERS = (64, 128, 256, 512)  # ResNet-18 stages 1..4 (torchvision), conv2..conv5 (reference)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _random(shape, rng):
    return rng.standard_normal(shape, dtype=np.float32)


def _torchvision_state_dict(rng):
    """torchvision's ``resnet18().state_dict()``: name → array, OIHW kernels."""
    def conv(name, out, inp, k):
        state[f"{name}.weight"] = _random((out, inp, k, k), rng)

    def bn(name, channels):
        for weight in ("weight", "bias", "running_mean", "running_var"):
            state[f"{name}.{weight}"] = _random((channels,), rng)
        state[f"{name}.num_batches_tracked"] = np.array(7, np.int64)

    state = {}
    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inputs = 64
    for layer, planes in enumerate(FILTERS, start=1):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            conv(f"{prefix}.conv1", planes, inputs, 3)
            bn(f"{prefix}.bn1", planes)
            conv(f"{prefix}.conv2", planes, planes, 3)
            bn(f"{prefix}.bn2", planes)
            if layer > 1 and block == 0:
                conv(f"{prefix}.downsample.0", planes, inputs, 1)
                bn(f"{prefix}.downsample.1", planes)
            inputs = planes
    state["fc.weight"] = _random((1000, 512), rng)
    state["fc.bias"] = _random((1000,), rng)
    return state


def _reference_checkpoint_arrays(rng):
    """resnet-18-tensorflow's converted ImageNet checkpoint: name → array, HWIO kernels."""
    def conv(name, inp, out, k):
        arrays[f"{name}/kernel"] = _random((k, k, inp, out), rng)

    def bn(name, channels):
        for weight in ("mu", "sigma", "beta", "gamma"):
            arrays[f"{name}/{weight}"] = _random((channels,), rng)

    arrays = {"global_step": np.array(0, np.int64)}
    conv("conv1/conv", 3, 64, 7)
    bn("conv1/bn", 64)
    inputs = 64
    for stage, filters in enumerate(FILTERS, start=2):
        for block in (1, 2):
            scope = f"conv{stage}_{block}"
            if stage > 2 and block == 1:
                conv(f"{scope}/shortcut", inputs, filters, 1)
            conv(f"{scope}/conv_1", inputs, filters, 3)
            bn(f"{scope}/bn_1", filters)
            conv(f"{scope}/conv_2", filters, filters, 3)
            bn(f"{scope}/bn_2", filters)
            inputs = filters
    arrays["logits/fc/weights"] = _random((512, 1000), rng)
    arrays["logits/fc/biases"] = _random((1000,), rng)
    return arrays


def _ours_from_torchvision(name):
    """``layer2.0.downsample.0.weight`` → ``stage3_block1_shortcut_conv/kernel`` etc."""
    def stage_block(match):
        return f"stage{int(match[1]) + 1}_block{int(match[2]) + 1}_"

    name = re.sub(r"^layer(\d)\.(\d)\.", stage_block, name)
    name = name.replace("downsample.0", "shortcut_conv").replace("bn", "norm")
    layer, weight = name.rsplit(".", 1)
    weight = {"weight": "kernel" if "conv" in layer else "gamma", "bias": "beta"}[weight]
    return f"{layer}/{weight}"


def _ours_from_reference(name):
    """``conv3_1/bn_2/gamma`` → ``stage3_block1_norm2/gamma``, ``conv1/bn/beta`` → ``norm1/beta``
    (as ``depth_prediction_nets.encoder_resnet`` names them)."""
    layer, weight = name.rsplit("/", 1)
    if layer.startswith("conv1/"):
        return {"conv1/conv": "conv1", "conv1/bn": "norm1"}[layer] + f"/{weight}"
    stage, block, part = re.fullmatch(r"conv(\d)_(\d)/(\w+)", layer).groups()
    part = {"shortcut": "shortcut_conv", "conv_1": "conv1", "conv_2": "conv2", "bn_1": "norm1",
            "bn_2": "norm2"}[part]
    return f"stage{stage}_block{block}_{part}/{weight}"


def _write_tf1_checkpoint(prefix, arrays):
    """Writes ``arrays`` as TF1 graph variables named exactly by their keys, with a Saver."""
    with tf.Graph().as_default():
        variables = [tf.compat.v1.get_variable(name, initializer=a) for name, a in arrays.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(prefix), write_meta_graph=False)


@pytest.fixture(scope="module")
def depth_net():
    net = DepthNet()
    net(tf.zeros([1, 32, 32, 3]))
    return net


@pytest.fixture(scope="module")
def torchvision_state():
    return _torchvision_state_dict(np.random.default_rng(1))


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory, torchvision_state):
    path = tmp_path_factory.mktemp("torchvision") / "resnet18.safetensors"
    save_file(torchvision_state, str(path))
    return path


def _zero_encoder(net):
    for variable in net.encoder.weights:
        variable.assign(tf.zeros_like(variable))


def _encoder_arrays(net):
    return {name: v.numpy() for name, v in net.encoder.named_variables().items()}


def test_name_table_covers_exactly_the_encoder_variables(depth_net):
    table = encoder_weights.encoder_name_table()
    assert sorted(ours for ours, _, _ in table) == sorted(depth_net.encoder.named_variables())
    assert len(table) == 54


def test_torchvision_safetensors_gives_every_variable_its_transposed_array(
    depth_net, torchvision_file, torchvision_state
):
    _zero_encoder(depth_net)
    depth_net.load_encoder_weights(torchvision_file)
    loaded = _encoder_arrays(depth_net)
    expected = {}
    for name, array in torchvision_state.items():
        if re.search(r"running|num_batches|downsample\.1|^fc\.", name):
            continue
        expected[_ours_from_torchvision(name)] = (
            np.transpose(array, (2, 3, 1, 0)) if array.ndim == 4 else array
        )
    assert sorted(expected) == sorted(loaded)
    for name, array in expected.items():
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)


def test_torchvision_skips_running_statistics_classifier_and_shortcut_norm(
    depth_net, torchvision_file
):
    weights = depth_net.load_encoder_weights(torchvision_file)
    assert weights.naming == "torchvision/timm naming" and weights.container == "safetensors"
    assert weights.skipped["classifier (fc)"] == ["fc.bias", "fc.weight"]
    assert weights.skipped["shortcut batch norm"] == sorted(
        f"layer{layer}.0.downsample.1.{w}" for layer in (2, 3, 4)
        for w in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    )
    statistics = weights.skipped["running statistics"]
    assert len(statistics) == 17 * 3 and "layer4.1.bn2.num_batches_tracked" in statistics
    assert weights.skipped_summary() == (
        "skipped 68 without a counterpart: 2 classifier (fc), 51 running statistics, "
        "15 shortcut batch norm"
    )


def test_reference_tf1_checkpoint_gives_every_variable_its_array(depth_net, tmp_path):
    arrays = _reference_checkpoint_arrays(np.random.default_rng(2))
    prefix = tmp_path / "init" / "model.ckpt"
    _write_tf1_checkpoint(prefix, arrays)
    _zero_encoder(depth_net)
    weights = depth_net.load_encoder_weights(str(prefix))
    loaded = _encoder_arrays(depth_net)
    expected = {
        _ours_from_reference(name): array for name, array in arrays.items()
        if re.search(r"/(kernel|gamma|beta)$", name) and not name.startswith("logits/")
    }
    assert sorted(expected) == sorted(loaded)
    for name, array in expected.items():
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)
    assert weights.container == "TF checkpoint" and weights.naming == "reference naming"
    assert weights.sources["stage4_block1_shortcut_conv/kernel"] == "conv4_1/shortcut/kernel"
    assert weights.skipped_summary() == (
        "skipped 37 without a counterpart: 2 classifier (fc), 34 running statistics, "
        "1 training state"
    )


def test_reference_training_checkpoint_reads_the_depth_prediction_scope(depth_net, tmp_path):
    arrays = {
        f"depth_prediction/{name}": array
        for name, array in _reference_checkpoint_arrays(np.random.default_rng(3)).items()
        if re.search(r"/(kernel|gamma|beta)$", name) and not name.startswith("logits/")
    }
    arrays["depth_prediction/conv1/conv/kernel/Adam"] = np.zeros([7, 7, 3, 64], np.float32)
    arrays["depth_prediction/upconv5/weights"] = np.zeros([3, 3, 256, 512], np.float32)
    arrays["MotionFieldNet/Conv1/weights"] = np.zeros([3, 3, 8, 16], np.float32)
    prefix = tmp_path / "model.ckpt-100"
    _write_tf1_checkpoint(prefix, arrays)
    weights = depth_net.load_encoder_weights(str(prefix) + ".index")
    np.testing.assert_array_equal(
        depth_net.encoder.named_variables()["stage5_block2_norm1/beta"].numpy(),
        arrays["depth_prediction/conv5_2/bn_1/beta"],
    )
    assert set(weights.skipped) == {"training state", "decoder and depth scale", "other networks"}


def test_our_npz_round_trips(depth_net, tmp_path):
    arrays = _encoder_arrays(depth_net)
    path = tmp_path / "encoder.npz"
    depth_net.save_encoder_weights(path)
    _zero_encoder(depth_net)
    weights = depth_net.load_encoder_weights(path)
    assert weights.naming == "our naming" and weights.skipped_summary() == "nothing skipped"
    for name, array in _encoder_arrays(depth_net).items():
        np.testing.assert_array_equal(array, arrays[name])


def test_format_is_recognised_by_content_not_extension(depth_net, torchvision_file, tmp_path):
    misnamed = tmp_path / "resnet18.pth"
    misnamed.write_bytes(torchvision_file.read_bytes())
    weights = depth_net.load_encoder_weights(misnamed)
    assert weights.container == "safetensors"


@pytest.mark.parametrize(
    "edit, message",
    [
        ("delete", r"missing \['layer4\.1\.bn2\.bias'\]"),
        ("reshape", r"'layer4\.1\.conv2\.weight' has shape \(512, 512, 1, 1\), "
                    r"expected \(512, 512, 3, 3\)"),
        ("extra", r"unexpected \['layer5\.0\.conv1\.weight'\]"),
    ],
)
def test_a_bad_weight_is_one_line_naming_file_and_weight_and_changes_nothing(
    depth_net, torchvision_state, tmp_path, edit, message
):
    state = dict(torchvision_state)
    if edit == "delete":
        del state["layer4.1.bn2.bias"]
    elif edit == "reshape":
        state["layer4.1.conv2.weight"] = np.zeros([512, 512, 1, 1], np.float32)
    else:
        state["layer5.0.conv1.weight"] = np.zeros([8, 8, 3, 3], np.float32)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    before = _encoder_arrays(depth_net)
    with pytest.raises(BadInputError, match=message) as error:
        depth_net.load_encoder_weights(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    for name, array in _encoder_arrays(depth_net).items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


def test_a_file_of_no_known_kind_is_a_clear_error(depth_net, tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"not a weight file at all")
    with pytest.raises(BadInputError, match=r"weights\.bin: not a weight file"):
        depth_net.load_encoder_weights(path)


def _write_zip_pth(path):
    with zipfile.ZipFile(path, "w") as archive:  # torch.save's layout: <name>/data.pkl, data/0, ...
        archive.writestr("resnet18/data.pkl", pickle.dumps({}, protocol=2))
        archive.writestr("resnet18/version", "3\n")


def _write_legacy_pth(path):
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))  # the legacy magic number


@pytest.mark.parametrize("write", [_write_zip_pth, _write_legacy_pth])
def test_pth_without_torch_says_so_and_suggests_safetensors(tmp_path, monkeypatch, write):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails, installed or not
    path = tmp_path / "resnet18.pth"
    write(path)
    with pytest.raises(BadInputError, match="needs torch") as error:
        encoder_weights.read_weight_file(path)
    assert "safetensors" in str(error.value) and "\n" not in str(error.value)


def _torch_conv2d(images, kernel, stride, padding):
    """PyTorch's conv2d, computed directly: images NCHW, kernel OIHW, symmetric zero padding."""
    images = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    _, _, kh, kw = kernel.shape
    out_h = (images.shape[2] - kh) // stride + 1
    out_w = (images.shape[3] - kw) // stride + 1
    output = np.zeros((images.shape[0], kernel.shape[0], out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            patch = images[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride]
            output += np.einsum("nihw,oi->nohw", patch, kernel[:, :, i, j])
    return output


def test_torchvision_conv1_kernel_computes_the_same_convolution(
    depth_net, torchvision_file, torchvision_state
):
    """Our conv1 with a converted kernel equals torchvision's conv1 (7x7, stride 2, padding 3).

    Keras' "same" padding with stride 2 pads (2, 3) on even sizes and (3, 3) on
    odd ones; torchvision always pads (3, 3). So we compare on an odd 11x13
    image, where both layers see the same padded input and only the kernel
    mapping can differ. (On the even sizes training uses, our outputs sit one
    input pixel off torchvision's, as the reference's TF "SAME" convs do.)
    """
    depth_net.load_encoder_weights(torchvision_file)
    images = np.random.default_rng(4).uniform(-1, 1, (2, 11, 13, 3)).astype(np.float32)
    ours = depth_net.encoder.conv1(tf.constant(images)).numpy()
    theirs = _torch_conv2d(images.transpose(0, 3, 1, 2), torchvision_state["conv1.weight"], 2, 3)
    np.testing.assert_allclose(ours, theirs.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def test_layer_norm_after_conv1_absorbs_the_imagenet_input_normalisation(
    depth_net, torchvision_file
):
    """Why we keep the reference's ``2·rgb − 1``: after conv1 and its layer norm it
    differs from ImageNet's ``(rgb − mean) / std`` by about 1% (away from the
    zero-padded border, cropped here before the norm's statistics)."""
    depth_net.load_encoder_weights(torchvision_file)
    norm1 = depth_net.encoder.norm1
    norm1.gamma.assign(tf.ones_like(norm1.gamma))
    norm1.beta.assign(tf.zeros_like(norm1.beta))
    rgb = np.random.default_rng(5).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)

    def features(inputs):
        return norm1(depth_net.encoder.conv1(tf.constant(inputs))[:, 2:-2, 2:-2]).numpy()

    ours, imagenet = features(2 * rgb - 1), features((rgb - IMAGENET_MEAN) / IMAGENET_STD)
    assert np.abs(ours - imagenet).mean() < 0.02 * np.abs(ours).mean()


def test_convert_weights_cli_writes_our_format_and_one_summary_line(
    torchvision_file, torchvision_state, tmp_path
):
    output = tmp_path / "resnet18_imagenet.npz"
    command = [sys.executable, "-m", "depth_motion_tf.convert_weights",
               f"--input={torchvision_file}", f"--output={output}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    lines = process.stdout.strip().splitlines()
    assert lines[-1] == (
        f"Wrote 54 encoder weights to {output} from {torchvision_file} (torchvision/timm naming, "
        "safetensors); skipped 68 without a counterpart: 2 classifier (fc), "
        "51 running statistics, 15 shortcut batch norm"
    )
    mapped = r"\s+layer2\.0\.downsample\.0\.weight\s+-> stage3_block1_shortcut_conv/kernel "
    assert any(re.match(mapped, line) for line in lines)
    with np.load(output) as written:
        assert len(written.files) == 54
        np.testing.assert_array_equal(
            written["conv1/kernel"], np.transpose(torchvision_state["conv1.weight"], (2, 3, 1, 0))
        )

