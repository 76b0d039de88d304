# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Behaviour of the model classes on tiny random models: config checks, shapes per variant, save/load, meta-device
loading, batching, hidden states and attentions, tuple outputs, training in every configuration branch, gradient
checkpointing, bfloat16 and input errors."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForUniversalSegmentation, ResNetConfig, SwinConfig

from transformers_maskdino import MaskDinoConfig, MaskDinoForUniversalSegmentation, MaskDinoModel

torch.set_num_threads(2)


def tiny_config(**kwargs) -> MaskDinoConfig:
    backbone = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[16, 16, 32, 32],
        depths=[1, 1, 1, 1],
        layer_type="bottleneck",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    defaults = dict(
        backbone_config=backbone,
        hidden_dim=32,
        num_queries=8,
        feature_size=32,
        mask_feature_size=16,
        encoder_layers=2,
        encoder_ffn_dim=32,
        decoder_layers=2,
        decoder_ffn_dim=32,
        num_labels=4,
        num_denoising=6,
        train_num_points=64,
    )
    defaults.update(kwargs)
    return MaskDinoConfig(**defaults)


def random_targets(batch_size, height, width, counts=(2, 1), num_labels=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    masks, labels = [], []
    for i in range(batch_size):
        n = counts[i % len(counts)]
        image_masks = torch.zeros(n, height, width)
        for j in range(n):
            y0, x0 = (int(v) for v in torch.randint(0, height // 2, (2,), generator=generator))
            image_masks[j, y0 : y0 + height // 3, x0 : x0 + width // 3] = 1
        masks.append(image_masks)
        labels.append(torch.randint(0, num_labels, (n,), generator=generator))
    return masks, labels


def make_model(config, seed=0):
    torch.manual_seed(seed)
    return MaskDinoForUniversalSegmentation(config).eval()


# ------------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mask_enhanced_box_init="boxes"), "mask_enhanced_box_init"),
        (dict(init_queries_from_encoder=False, mask_enhanced_box_init="mask2box"), "init_queries_from_encoder=True"),
        (dict(initial_prediction=False, mask_enhanced_box_init="bitmask"), "initial_prediction=True"),
        (dict(init_queries_from_encoder=False, mask_enhanced_box_init="none", learnable_query_content=True), "learnable_query_content"),
        (dict(num_feature_levels=2, encoder_in_features=["stage2", "stage3", "stage4"]), "num_feature_levels"),
        (dict(feature_size=48), "multiple of 32"),
        (dict(hidden_dim=30, decoder_attention_heads=3), "divisible by 4"),
        (dict(hidden_dim=36), "divisible by its number of attention heads"),
        (dict(stuff_label_ids=[4]), "stuff_label_ids"),
        (dict(encoder_in_features=["stage5"]), "does not output"),
        (dict(num_denoising=-1), "num_denoising"),
        (dict(importance_sample_ratio=1.5), "importance_sample_ratio"),
    ],
)
def test_contradictory_configs_are_rejected_with_the_field_named(kwargs, message):
    with pytest.raises(StrictDataclassClassValidationError) as error:
        tiny_config(**kwargs)
    assert isinstance(error.value.__cause__, ValueError)
    assert message in str(error.value.__cause__)


def test_config_validate_catches_a_mutation():
    config = tiny_config()
    config.mask_enhanced_box_init = "mask2box"
    config.init_queries_from_encoder = False
    with pytest.raises(StrictDataclassClassValidationError):
        config.validate()


def test_configs_with_old_field_names_and_post_processing_fields_still_load(tmp_path, caplog):
    import json
    import logging

    from transformers.utils.logging import warning_once

    old = tiny_config().to_dict()
    old.pop("use_box_loss"), old.pop("supervise_stuff_boxes")
    # renamed fields, and the post-processing defaults older configs carried (they belong to the image processor)
    old.update(box_loss=False, panoptic_box_loss=True, object_mask_threshold=0.3, overlap_threshold=0.7,
               panoptic_temperature=0.05, apply_panoptic_temperature=False, detections_per_image=50)
    (tmp_path / "config.json").write_text(json.dumps(old))
    warning_once.cache_clear()
    with caplog.at_level(logging.WARNING):
        config = AutoConfig.from_pretrained(tmp_path)
    assert config.use_box_loss is False and config.supervise_stuff_boxes is True
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    # one deprecation warning per renamed field, nothing about the dropped post-processing fields
    assert sorted(warnings) == [
        "`box_loss` is deprecated and will be removed: use `use_box_loss`.",
        "`panoptic_box_loss` is deprecated and will be removed: use `supervise_stuff_boxes`.",
    ], warnings
    config.save_pretrained(tmp_path / "resaved")
    saved = json.loads((tmp_path / "resaved" / "config.json").read_text())
    dropped = {"box_loss", "panoptic_box_loss", "object_mask_threshold", "overlap_threshold", "panoptic_temperature",
               "apply_panoptic_temperature", "detections_per_image"}
    assert not dropped & set(saved)
    assert saved["use_box_loss"] is False and saved["supervise_stuff_boxes"] is True


def test_config_round_trip_and_auto_config(tmp_path):
    config = tiny_config(stuff_label_ids=[2, 3], id2label={0: "a", 1: "b", 2: "c", 3: "d"})
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, MaskDinoConfig)
    without_path = lambda c: {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert without_path(reloaded) == without_path(config)
    assert reloaded.stuff_label_ids == [2, 3] and reloaded.id2label[3] == "d"
    assert reloaded.hidden_size == 32 and reloaded.num_hidden_layers == 2


def test_parameter_count_of_the_released_r50_instance_architecture():
    # 3+1 levels, encoder FFN 2048, 300 queries, 80 classes: the original has 52,058,004 parameters
    with torch.device("meta"):
        model = MaskDinoForUniversalSegmentation(MaskDinoConfig(num_labels=80))
    assert sum(p.numel() for p in model.parameters()) == 52_058_004
    frozen_batch_norm_buffers = [n for n, _ in model.named_buffers() if n.endswith("running_var")]
    assert len(frozen_batch_norm_buffers) == 53  # stem + 16 bottlenecks * 3 + 4 shortcuts


def test_swin_backbone_builds_and_runs():
    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], out_features=["stage1", "stage2", "stage3", "stage4"])
    config = tiny_config(backbone_config=backbone, encoder_in_features=["stage1", "stage2", "stage3", "stage4"], num_feature_levels=5)
    model = make_model(config)
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96), output_hidden_states=True)
    assert [tuple(f.shape[-2:]) for f in outputs.multi_scale_features] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert outputs.masks_queries_logits.shape == (1, 8, 16, 24)


# ------------------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize(
    "kwargs, num_class_logits, has_proposals",
    [
        (dict(), 4, True),
        (dict(mask_enhanced_box_init="bitmask"), 4, True),
        (dict(mask_enhanced_box_init="none", learnable_query_content=True), 4, True),
        (dict(init_queries_from_encoder=False, mask_enhanced_box_init="none", use_semantic_cross_entropy=True), 5, False),
        (dict(encoder_low_resolution_first=True, num_feature_levels=4), 4, True),
    ],
)
def test_output_shapes(kwargs, num_class_logits, has_proposals):
    model = make_model(tiny_config(**kwargs))
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 96), output_auxiliary_logits=True)
    assert outputs.class_queries_logits.shape == (2, 8, num_class_logits)
    assert outputs.masks_queries_logits.shape == (2, 8, 16, 24)
    assert outputs.pred_boxes.shape == (2, 8, 4)
    assert ((outputs.pred_boxes >= 0) & (outputs.pred_boxes <= 1)).all()
    assert len(outputs.auxiliary_outputs) == 2  # the initial prediction and decoder layer 0
    assert all(aux["masks_queries_logits"] is None for aux in outputs.auxiliary_outputs)  # eval: last layer only
    assert (outputs.encoder_proposal_outputs is not None) == has_proposals
    assert outputs.intermediate_reference_points.shape == (2, 3, 8, 4)
    assert outputs.loss is None and outputs.denoising_outputs is None
    assert outputs.image_sizes.tolist() == [[64, 96], [64, 96]]
    assert outputs.padded_image_sizes.tolist() == [[64, 96], [64, 96]]


def test_image_sizes_come_from_the_pixel_mask():
    model = make_model(tiny_config())
    pixel_mask = torch.zeros(2, 64, 96, dtype=torch.long)
    pixel_mask[0, :50, :70] = 1
    pixel_mask[1] = 1
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 96), pixel_mask=pixel_mask)
    assert outputs.image_sizes.tolist() == [[50, 70], [64, 96]]


def test_auto_classes_resolve_to_our_models():
    config = tiny_config()
    assert isinstance(AutoModel.from_config(config), MaskDinoModel)
    assert isinstance(AutoModelForUniversalSegmentation.from_config(config), MaskDinoForUniversalSegmentation)


# ------------------------------------------------------------------------------------------------------ save / load


def test_save_and_reload_give_identical_outputs(tmp_path):
    model = make_model(tiny_config())
    pixel_values = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(pixel_values)
    model.save_pretrained(tmp_path / "first")
    saved = load_file(tmp_path / "first" / "model.safetensors")
    assert set(saved) == set(model.state_dict())  # nothing dropped, nothing shared silently
    reloaded = AutoModelForUniversalSegmentation.from_pretrained(tmp_path / "first")
    reloaded.save_pretrained(tmp_path / "second")
    reloaded = AutoModelForUniversalSegmentation.from_pretrained(tmp_path / "second")
    with torch.no_grad():
        actual = reloaded(pixel_values)
    for name in ("class_queries_logits", "masks_queries_logits", "pred_boxes"):
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0)


def test_meta_device_init_recreates_every_tensor():
    config = tiny_config()
    torch.manual_seed(0)
    reference = MaskDinoForUniversalSegmentation(config)
    torch.manual_seed(0)
    loaded = MaskDinoForUniversalSegmentation.from_pretrained(None, config=config, state_dict={})
    reference_state = reference.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert tensor.device.type != "meta", name
        assert torch.isfinite(tensor.float()).all(), name
        if "running_var" in name or name.endswith("relative_position_index"):
            torch.testing.assert_close(tensor, reference_state[name], msg=name)
    # deterministic inits (sampling-offset grid, zeroed box head, frozen statistics) are equal
    for suffix in ("sampling_offsets.bias", "bbox_embed.layers.2.weight", "running_mean"):
        for name in (n for n in reference_state if n.endswith(suffix)):
            torch.testing.assert_close(loaded.state_dict()[name], reference_state[name], msg=name)
    with torch.no_grad():
        outputs = loaded.eval()(torch.randn(1, 3, 64, 96))
    assert torch.isfinite(outputs.masks_queries_logits).all()


@pytest.mark.parametrize("load", [False, True], ids=["constructed", "meta_device_loaded"])
def test_container_specific_inits_apply_although_the_package_is_custom_code(load):
    # transformers skips `_init_weights` on parameter-less modules of packages outside it; the deformable attention,
    # box head and input projection inits must still reach their layers
    from transformers_maskdino.modeling_maskdino import MaskDinoMultiscaleDeformableAttention, sampling_offsets_grid_init

    assert MaskDinoForUniversalSegmentation.is_custom_code()
    config = tiny_config()
    torch.manual_seed(0)
    if load:
        model = MaskDinoForUniversalSegmentation.from_pretrained(None, config=config, state_dict={})
    else:
        model = MaskDinoForUniversalSegmentation(config)
    attentions = [m for m in model.modules() if isinstance(m, MaskDinoMultiscaleDeformableAttention)]
    assert len(attentions) == config.encoder_layers + config.decoder_layers
    for attention in attentions:
        grid = sampling_offsets_grid_init(attention.n_heads, attention.n_levels, attention.n_points)
        torch.testing.assert_close(attention.sampling_offsets.bias, grid, rtol=0, atol=0)
        for zero in (attention.sampling_offsets.weight, attention.attention_weights.weight, attention.value_proj.bias):
            assert zero.abs().sum() == 0
        # Xavier uniform, not the default normal(0, init_std)
        fan_in, fan_out = attention.value_proj.in_features, attention.value_proj.out_features
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert attention.value_proj.weight.abs().max() <= bound and attention.value_proj.weight.std() > 2 * config.init_std
    box_head = model.model.decoder.bbox_embed.layers[-1]
    assert box_head.weight.abs().sum() == 0 and box_head.bias.abs().sum() == 0
    for projection in model.model.pixel_decoder.input_projections:
        assert projection[0].bias.abs().sum() == 0 and projection[0].weight.std() > 2 * config.init_std


def test_missing_and_unexpected_tensors_are_reported(tmp_path):
    model = make_model(tiny_config())
    model.save_pretrained(tmp_path)
    _, info = MaskDinoForUniversalSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


@pytest.mark.parametrize("freeze_backbone_batch_norm", [True, False])
def test_batch_norm_step_counters_are_optional_in_checkpoints(tmp_path, freeze_backbone_batch_norm):
    # released checkpoints (and the demo model) have none; PyTorch's trainable BatchNorm saves one per layer
    model = make_model(tiny_config(freeze_backbone_batch_norm=freeze_backbone_batch_norm))
    state_dict = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    model.save_pretrained(tmp_path, state_dict=state_dict)
    loaded, info = MaskDinoForUniversalSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    counters = [b for name, b in loaded.named_buffers() if name.endswith("num_batches_tracked")]
    assert (len(counters) == 0) == freeze_backbone_batch_norm and all(c.item() == 0 for c in counters)
    for name, tensor in state_dict.items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


# ------------------------------------------------------------------------------------------------------ behaviour


def test_batch_equals_single_images():
    model = make_model(tiny_config())
    pixel_values = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        batch = model(pixel_values)
        singles = [model(pixel_values[i : i + 1]) for i in range(3)]
    for name in ("class_queries_logits", "masks_queries_logits", "pred_boxes"):
        torch.testing.assert_close(torch.cat([s[name] for s in singles]), batch[name], rtol=1e-4, atol=1e-4)


def test_hidden_states_and_attentions():
    config = tiny_config()
    model = make_model(config)
    # attention weights need the eager self-attention (sdpa does not return them), as in transformers
    model.set_attn_implementation({"": "eager", "backbone_config": None})
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96), output_hidden_states=True, output_attentions=True)
    sequence_length = outputs.encoder_last_hidden_state.shape[1]
    assert len(outputs.encoder_hidden_states) == config.encoder_layers + 1
    assert outputs.encoder_hidden_states[-1].shape == (1, sequence_length, config.feature_size)
    assert len(outputs.encoder_attentions) == config.encoder_layers
    assert outputs.encoder_attentions[0].shape == (1, sequence_length, 8, config.num_feature_levels, 4)
    assert len(outputs.decoder_hidden_states) == config.decoder_layers + 1
    assert outputs.decoder_hidden_states[0].shape == (1, config.num_queries, config.hidden_dim)
    assert len(outputs.decoder_attentions) == config.decoder_layers
    assert outputs.decoder_attentions[0].shape == (1, 8, config.num_queries, config.num_queries)
    assert len(outputs.cross_attentions) == config.decoder_layers
    torch.testing.assert_close(outputs.decoder_attentions[0].sum(-1), torch.ones(1, 8, config.num_queries))
    without = model(torch.randn(1, 3, 64, 96))
    assert without.encoder_hidden_states is None and without.decoder_attentions is None


def test_return_dict_false_gives_the_tuple_of_the_output():
    model = make_model(tiny_config())
    pixel_values = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        as_dict = model(pixel_values)
        as_tuple = model(pixel_values, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict.to_tuple())
    torch.testing.assert_close(as_tuple[0], as_dict.class_queries_logits)


def test_eager_and_sdpa_self_attention_agree():
    config = tiny_config()
    model = make_model(config)
    pixel_values = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        model.set_attn_implementation({"": "eager", "backbone_config": None})
        eager = model(pixel_values)
        model.set_attn_implementation({"": "sdpa", "backbone_config": None})
        sdpa = model(pixel_values)
    torch.testing.assert_close(sdpa.class_queries_logits, eager.class_queries_logits, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(num_denoising=0),
        dict(mask_enhanced_box_init="bitmask"),
        dict(mask_enhanced_box_init="none"),
        dict(mask_enhanced_box_init="none", learnable_query_content=True),
        dict(init_queries_from_encoder=False, mask_enhanced_box_init="none"),
        dict(init_queries_from_encoder=False, mask_enhanced_box_init="none", use_semantic_cross_entropy=True),
        dict(denoise_masks=False, stuff_label_ids=[3]),
    ],
)
def test_training_step_gives_every_parameter_a_gradient(kwargs):
    config = tiny_config(**kwargs)
    model = make_model(config).train()
    masks, labels = random_targets(2, 64, 96)
    outputs = model(torch.randn(2, 3, 64, 96), mask_labels=masks, class_labels=labels)
    assert torch.isfinite(outputs.loss)
    assert outputs.loss.dim() == 0
    torch.testing.assert_close(outputs.loss, sum(outputs.loss_dict.values()))
    assert ("loss_ce_dn" in outputs.loss_dict) == (config.num_denoising > 0)
    assert ("loss_ce_interm" in outputs.loss_dict) == config.init_queries_from_encoder
    outputs.loss.backward()
    no_gradient = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_gradient, f"parameters without gradient (DDP would need find_unused_parameters): {no_gradient}"


def test_every_training_output_set_carries_the_mask_embeddings_of_its_logits():
    # the loss computes the matched masks from these factors (loss_masks); they must be the sets' own
    model = make_model(tiny_config()).train()
    masks, labels = random_targets(2, 64, 96)
    outputs = model(torch.randn(2, 3, 64, 96), mask_labels=masks, class_labels=labels, output_auxiliary_logits=True)
    denoising = outputs.denoising_outputs
    sets = [outputs, outputs.encoder_proposal_outputs, denoising, *outputs.auxiliary_outputs]
    for output in sets + denoising["auxiliary_outputs"]:
        logits = torch.einsum("bqc,bchw->bqhw", output["mask_embeddings"], outputs.mask_features)
        torch.testing.assert_close(logits, output["masks_queries_logits"])


def test_training_with_an_image_without_targets_and_denoising_outputs():
    model = make_model(tiny_config()).train()
    masks, labels = random_targets(2, 64, 96, counts=(3, 0))
    outputs = model(torch.randn(2, 3, 64, 96), mask_labels=masks, class_labels=labels)
    meta = outputs.denoising_meta_values
    assert meta["max_targets_per_image"] == 3 and meta["num_denoising_groups"] == 2
    assert outputs.denoising_outputs["class_queries_logits"].shape == (2, 6, 4)
    assert len(outputs.denoising_outputs["auxiliary_outputs"]) == 2
    assert outputs.class_queries_logits.shape == (2, 8, 4)  # denoising queries are split off
    outputs.loss.backward()


def test_eval_mode_forward_with_labels_returns_the_loss():
    # Trainer's prediction_step computes the loss in eval mode: every auxiliary set needs its masks then
    model = make_model(tiny_config())
    masks, labels = random_targets(2, 64, 96)
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 96), mask_labels=masks, class_labels=labels)
    assert torch.isfinite(outputs.loss) and "loss_mask_0" in outputs.loss_dict
    assert outputs.denoising_outputs is None and outputs.loss_dict["loss_ce_dn"] == 0  # no denoising in eval mode


def test_trainer_label_names_and_explicit_target_boxes():
    from transformers.utils.generic import find_labels

    assert find_labels(MaskDinoForUniversalSegmentation) == ["mask_labels", "class_labels"]
    model = make_model(tiny_config(num_denoising=0)).train()
    masks, labels = random_targets(1, 64, 96, counts=(2,))
    pixel_values = torch.randn(1, 3, 64, 96)
    torch.manual_seed(0)
    derived = model(pixel_values, mask_labels=masks, class_labels=labels).loss_dict
    derived_boxes = model.build_targets(masks, labels, torch.tensor([[64, 96]]))[0]["boxes"]
    torch.manual_seed(0)
    same = model(pixel_values, mask_labels=masks, class_labels=labels, target_boxes=[derived_boxes]).loss_dict
    torch.manual_seed(0)
    shifted = model(pixel_values, mask_labels=masks, class_labels=labels, target_boxes=[derived_boxes * 0.5]).loss_dict
    torch.testing.assert_close(same["loss_bbox"], derived["loss_bbox"])
    assert not torch.isclose(shifted["loss_bbox"], derived["loss_bbox"])


def test_gradient_checkpointing_gives_the_same_gradients():
    config = tiny_config(num_denoising=0)
    masks, labels = random_targets(1, 64, 96)
    pixel_values = torch.randn(1, 3, 64, 96)
    gradients = []
    for checkpointing in (False, True):
        model = make_model(config).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.model.decoder.layers[0].gradient_checkpointing
        torch.manual_seed(1)
        model(pixel_values, mask_labels=masks, class_labels=labels).loss.backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name in gradients[0]:
        torch.testing.assert_close(gradients[1][name], gradients[0][name], rtol=1e-4, atol=1e-5, msg=name)


def test_bfloat16_forward():
    model = make_model(tiny_config())
    pixel_values = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(pixel_values)
        outputs = model.to(torch.bfloat16)(pixel_values.to(torch.bfloat16))
    assert outputs.class_queries_logits.dtype == torch.bfloat16
    assert torch.isfinite(outputs.masks_queries_logits.float()).all()
    torch.testing.assert_close(outputs.pred_boxes.float(), expected.pred_boxes, rtol=0.05, atol=0.05)


# ------------------------------------------------------------------------------------------------------ input errors


@pytest.mark.parametrize(
    "make_inputs, message",
    [
        (lambda: dict(pixel_values=torch.randn(3, 64, 96)), "must have shape (batch_size, 3, height, width)"),
        (lambda: dict(pixel_values=torch.randn(1, 4, 64, 96)), "must have shape (batch_size, 3, height, width)"),
        (lambda: dict(pixel_values=torch.zeros(1, 3, 64, 64, dtype=torch.uint8)), "floating-point"),
        (lambda: dict(pixel_values=torch.randn(1, 3, 60, 64)), "multiples of 32"),
        (lambda: dict(pixel_values=torch.randn(1, 3, 64, 96), pixel_mask=torch.ones(1, 32, 64)), "`pixel_mask` must have shape"),
        (lambda: dict(pixel_values=torch.randn(1, 3, 64, 96), mask_labels=[torch.zeros(1, 64, 96)]), "given together"),
        (
            lambda: dict(pixel_values=torch.randn(1, 3, 64, 96), mask_labels=[torch.zeros(1, 32, 32)], class_labels=[torch.tensor([0])]),
            "padded input size",
        ),
        (
            lambda: dict(pixel_values=torch.randn(1, 3, 64, 96), mask_labels=[torch.zeros(2, 64, 96)], class_labels=[torch.tensor([0])]),
            "to match `mask_labels[0]`",
        ),
        (
            lambda: dict(pixel_values=torch.randn(1, 3, 64, 96), mask_labels=[torch.zeros(1, 64, 96)], class_labels=[torch.tensor([9])]),
            "must be in [0, 3]",
        ),
        (
            lambda: dict(pixel_values=torch.randn(2, 3, 64, 96), mask_labels=[torch.zeros(1, 64, 96)], class_labels=[torch.tensor([0])]),
            "one entry per image",
        ),
    ],
)
def test_bad_inputs_get_clear_errors(make_inputs, message):
    model = make_model(tiny_config())
    with pytest.raises(ValueError) as error:
        model(**make_inputs())
    assert message in str(error.value)


def test_mask_enhanced_anchor_boxes_equal_the_originals_min_and_max_over_coordinates():
    # The original's definitions, written over full-size coordinate tensors; ours reduces the masks to their
    # occupied rows and columns first. Cases: random blobs, empty masks, a single pixel at (0, 0), a full mask.
    from transformers_maskdino.modeling_maskdino import mask_enhanced_anchor_boxes

    generator = torch.Generator().manual_seed(0)
    height, width = 13, 17
    logits = torch.randn(2, 6, height, width, generator=generator) - 1.0
    logits[0, 1] = -1.0
    logits[0, 2] = -1.0
    logits[0, 2, 0, 0] = 1.0
    logits[1, 3] = 1.0
    masks = logits.flatten(0, 1) > 0
    y = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    x = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    x_masked, y_masked = masks * x, masks * y
    inclusive = torch.stack(
        [
            x_masked.masked_fill(~masks, 1e8).flatten(1).min(-1)[0],
            y_masked.masked_fill(~masks, 1e8).flatten(1).min(-1)[0],
            x_masked.flatten(1).max(-1)[0],
            y_masked.flatten(1).max(-1)[0],
        ],
        1,
    )
    non_empty = masks.flatten(1).any(-1, keepdim=True)
    covering = (inclusive + torch.tensor([0.0, 0.0, 1.0, 1.0])) * non_empty
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    for box_init, corners in (("mask2box", inclusive), ("bitmask", covering)):
        center = torch.cat([(corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]], -1)
        expected = (center / scale).reshape(2, 6, 4)
        torch.testing.assert_close(mask_enhanced_anchor_boxes(logits, box_init), expected, rtol=0, atol=0)


def test_fused_cpu_linear_gives_the_numbers_of_f_linear_and_steps_aside_where_it_must(monkeypatch):
    import transformers_maskdino.modeling_maskdino as modeling

    fused = modeling.MKLDNN_LINEAR_POINTWISE
    if fused is None:
        pytest.skip("no oneDNN linear in this PyTorch build (x86 builds have it)")
    calls = []
    monkeypatch.setattr(modeling, "MKLDNN_LINEAR_POINTWISE", lambda *args: calls.append(args[3]) or fused(*args))
    torch.manual_seed(0)
    layer, hidden = modeling.MaskDinoLinear(32, 48), torch.randn(2, 7, 32)
    for dtype in (torch.float32, torch.bfloat16):
        layer, x = layer.to(dtype), hidden.to(dtype)
        expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
        with torch.inference_mode():
            torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)
            torch.testing.assert_close(layer(x, relu=True), expected.relu(), rtol=0, atol=0)
    assert calls == ["none", "relu", "none", "relu"]
    # F.linear with gradients, under autocast and in exports (the oneDNN op has no autograd, autocast rule or ONNX
    # translation)
    calls.clear()
    hidden.requires_grad_(True)
    layer.float()(hidden, relu=True).sum().backward()
    expected_grads = layer.weight.grad, hidden.grad
    layer.weight.grad = hidden.grad = None
    torch.nn.functional.linear(hidden, layer.weight, layer.bias).relu().sum().backward()
    for ours, expected in zip(expected_grads, (layer.weight.grad, hidden.grad)):
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    hidden = hidden.detach()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(hidden).dtype == torch.bfloat16
    assert "mkldnn" not in str(torch.export.export(layer.eval(), (hidden,)).graph) and calls == []


def test_encoder_ffn_in_token_chunks_equals_the_whole_at_once():
    from transformers_maskdino.modeling_maskdino import FFN_CHUNK_TOKENS, MaskDinoMLP

    torch.manual_seed(0)
    mlp = MaskDinoMLP(tiny_config(), 32, 64).eval()
    hidden = torch.randn(1, 2 * FFN_CHUNK_TOKENS + 5, 32)  # two full chunks and a partial one
    with torch.inference_mode():
        torch.testing.assert_close(mlp(hidden), mlp._feed_forward(hidden), rtol=1e-6, atol=1e-6)


def test_fused_resnet_layers_keep_transformers_names_and_numbers_and_step_aside_where_they_must(monkeypatch):
    # CPU inference: one oneDNN convolution per layer with the frozen batch norm folded in, against
    # transformers' own ResNet (frozen batch norm, unfused) on the same weights and statistics, in both layouts. A
    # block writes into its residual, except into an input seen elsewhere: stage 1's first block has an identity
    # shortcut here, and its input is hidden state 0
    from transformers import AutoBackbone

    import transformers_maskdino.modeling_maskdino as modeling

    fused = modeling.MKLDNN_CONVOLUTION_POINTWISE
    if fused is None:
        pytest.skip("no oneDNN convolution in this PyTorch build (x86 builds have it)")
    stages = ["stage1", "stage2", "stage3", "stage4"]
    resnet = ResNetConfig(embedding_size=16, hidden_sizes=[16, 16, 32, 32], depths=[2, 1, 1, 2], out_features=stages)
    backbone = make_model(tiny_config(backbone_config=resnet)).model.backbone
    plain = AutoBackbone.from_config(backbone.config)
    modeling.replace_batch_norm(plain)
    assert plain.state_dict().keys() == backbone.state_dict().keys()
    for buffer in backbone.buffers():
        if buffer.is_floating_point():
            buffer.uniform_(0.5, 1.5)
    plain.load_state_dict(backbone.state_dict())
    calls = []
    monkeypatch.setattr(modeling, "MKLDNN_CONVOLUTION_POINTWISE", CountingOp(fused, calls))
    in_place = CountingOp(modeling.MKLDNN_CONVOLUTION_POINTWISE_INPLACE, calls, "in place")
    monkeypatch.setattr(modeling, "MKLDNN_CONVOLUTION_POINTWISE_INPLACE", in_place)
    pixels = torch.randn(2, 3, 64, 96)
    depths = backbone.config.depths
    with torch.no_grad():
        expected = plain(pixels, output_hidden_states=True)
        for layout in (torch.contiguous_format, torch.channels_last):
            ours = backbone(inputs := pixels.contiguous(memory_format=layout), output_hidden_states=True)
            assert torch.equal(inputs, pixels)
            pairs = zip(ours.hidden_states + ours.feature_maps, expected.hidden_states + expected.feature_maps)
            for mine, theirs in pairs:
                torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())
    # the stem, the 3 projection shortcuts and 3 convolutions per block, the last with the residual addition
    assert calls.count("binary") == 2 and calls.count("in place") == 2 * (sum(depths) - 1)
    assert len(calls) == 2 * (len(depths) + 3 * sum(depths))
    # bfloat16 channels-last (MaskDinoModel's CPU layout), fused (folded in float32, rounded once): about as close to
    # float32 as transformers' layers in bfloat16; NCHW bfloat16 unfused (oneDNN's residual fusion fails on it)
    calls.clear()
    with torch.no_grad():
        reference = [feature.float() for feature in plain(pixels).feature_maps]
        backbone.bfloat16(), plain.bfloat16()
        plain_features = plain(pixels.bfloat16()).feature_maps
        for ours, theirs in zip(backbone(pixels.bfloat16()).feature_maps, plain_features):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        assert calls == []
        fused_features = backbone(pixels.bfloat16().contiguous(memory_format=torch.channels_last)).feature_maps
    assert calls.count("binary") == 1 and calls.count("in place") == sum(depths) - 1
    assert len(calls) == len(depths) + 3 * sum(depths)
    for ours, theirs, expected in zip(fused_features, plain_features, reference):
        assert ours.dtype == torch.bfloat16
        ours_error, theirs_error = (ours.float() - expected).norm(), (theirs.float() - expected).norm()
        assert ours_error <= 1.5 * theirs_error and ours_error <= 0.02 * expected.norm()
    # with gradients and in exports: transformers' computation exactly
    calls.clear()
    backbone.float(), plain.float()
    with torch.enable_grad():
        for ours, theirs in zip(backbone(pixels.requires_grad_(True)).feature_maps, plain(pixels).feature_maps):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    graph = str(torch.export.export(backbone.float(), (pixels.detach(),)).graph)
    assert "mkldnn" not in graph and "conv" in graph and calls == []


def test_mask_logits_from_channels_last_features_equal_the_einsum(monkeypatch):
    import transformers_maskdino.modeling_maskdino as modeling

    calls = []
    fused = modeling.MKLDNN_LINEAR_POINTWISE
    if fused is not None:
        monkeypatch.setattr(modeling, "MKLDNN_LINEAR_POINTWISE", lambda *args: calls.append(1) or fused(*args))
    for dtype, batch_size in ((torch.float32, 1), (torch.float32, 2), (torch.bfloat16, 2)):
        embeddings = torch.randn(batch_size, 5, 16, dtype=dtype)
        features = torch.randn(batch_size, 16, 6, 7, dtype=dtype)
        expected = torch.einsum("bqc,bchw->bqhw", embeddings.float(), features.float())
        with torch.no_grad():
            ours = modeling.mask_logits_from(embeddings, features.contiguous(memory_format=torch.channels_last))
        tolerance = (1e-5 if dtype == torch.float32 else 1e-2) * expected.abs().max().item()
        torch.testing.assert_close(ours.float(), expected, rtol=0, atol=tolerance)
        assert ours.shape == expected.shape and ours.is_contiguous() and ours.dtype == dtype
    assert len(calls) == (5 if fused is not None else 0)  # one matmul per image
    embeddings.requires_grad_(True)  # with gradients: the einsum
    modeling.mask_logits_from(embeddings, features.contiguous(memory_format=torch.channels_last)).sum().backward()
    assert embeddings.grad is not None and len(calls) == (5 if fused is not None else 0)


class CountingOp:
    def __init__(self, op, calls, binary_name="binary"):
        self.op, self.calls, self.binary_name = op, calls, binary_name

    def __call__(self, *args):
        self.calls.append("unary")
        return self.op(*args)

    def binary(self, *args):
        self.calls.append(self.binary_name)
        return self.op.binary(*args)
