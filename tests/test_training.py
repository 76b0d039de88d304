# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Training: overfitting two synthetic images, dataset rows to targets, collation, the optimizer's parameter
groups, the eval-mode loss, fine-tuning with a new label set, loading datasets, ImageNet backbone weights, box-only
(detection) targets, and the COCO / semantic-folder readers."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from training_fixtures import (
    TINY_TRAINING_CONFIG,
    one_intra_op_thread,
    save_synthetic_dataset,
    tiny_training_config,
    write_tiny_config,
)
from transformers import ResNetConfig, ResNetForImageClassification, ResNetModel, SwinConfig, SwinModel

from transformers_maskdino import MaskDinoForUniversalSegmentation, MaskDinoImageProcessor
from transformers_maskdino.training import (
    SegmentationTransform,
    build_model_and_image_processor,
    build_optimizer,
    collate_segmentation_batch,
    dataset_label_names,
    dataset_stuff_label_ids,
    evaluation_loss,
    ground_truth_at_input_size,
    ground_truth_segments,
    load_backbone_weights,
    load_segmentation_dataset,
    optimizer_parameter_groups,
)
from transformers_maskdino.training.synthetic_data import LABELS, STUFF_LABEL_IDS, generate_dataset


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    with one_intra_op_thread():
        yield


@pytest.fixture(scope="module")
def processor():
    return MaskDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}, stuff_label_ids=STUFF_LABEL_IDS)


@pytest.fixture(scope="module")
def rows():
    return generate_dataset(4, seed=0, image_size=64, max_objects=2)


# ------------------------------------------------------------------------------------------------------ overfitting


def test_a_tiny_model_overfits_two_synthetic_images(processor):
    dataset = generate_dataset(2, seed=0, image_size=64, max_objects=2).with_transform(
        SegmentationTransform(processor)
    )
    batch = collate_segmentation_batch([dataset[0], dataset[1]])
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(tiny_training_config()).train()
    # the original's recipe (AdamW, weight decay 0.05, gradient norm clipped to 0.01) at a learning rate for a tiny
    # model trained from scratch
    optimizer = build_optimizer(model, learning_rate=3e-3, backbone_learning_rate_multiplier=1.0)
    losses = []
    for step in range(300):
        torch.manual_seed(step)  # denoising noise and point sampling differ per step, as in training
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if len(losses) >= 5 and np.mean(losses[-5:]) * 5 <= losses[0]:
            break
    assert np.mean(losses[-5:]) * 5 <= losses[0], f"loss went from {losses[0]:.1f} to {np.mean(losses[-5:]):.1f}"
    # and the predictions got better: the final layer's masks match the targets
    model.eval()
    with torch.no_grad():
        outputs = model(batch["pixel_values"], pixel_mask=batch["pixel_mask"])
    panoptic = processor.post_process_panoptic_segmentation(outputs)
    for result, labels in zip(panoptic, batch["class_labels"]):
        assert {info["label_id"] for info in result["segments_info"]} & set(labels.tolist())


# ------------------------------------------------------------------------------------------------------ targets


def test_panoptic_instance_and_semantic_targets(rows, processor):
    row = rows[0]
    segments = row["segments_info"]
    panoptic_map = np.asarray(row["panoptic_map"])
    for task, expected_labels in (
        ("panoptic", sorted(s["category_id"] for s in segments)),
        ("instance", sorted(s["category_id"] for s in segments if s["isthing"])),
        ("semantic", sorted({s["category_id"] for s in segments})),
    ):
        example = rows.with_transform(SegmentationTransform(processor, task=task))[0]
        assert example["pixel_values"].shape == (3, 64, 64)
        assert example["mask_labels"].shape == (len(expected_labels), 64, 64)
        assert sorted(example["class_labels"].tolist()) == expected_labels
        masks = example["mask_labels"].bool()
        assert (masks.sum(0) <= 1).all()  # segments do not overlap
        if task != "instance":
            assert masks.any(0).all()  # and cover the image
    # the panoptic targets are the segments themselves
    example = rows.with_transform(SegmentationTransform(processor))[0]
    for mask, label in zip(example["mask_labels"].bool().numpy(), example["class_labels"].tolist()):
        segment_ids = np.unique(panoptic_map[mask])
        assert len(segment_ids) == 1
        assert next(s["category_id"] for s in segments if s["id"] == segment_ids[0]) == label


def test_flips_move_image_and_targets_together(rows, processor):
    plain = rows.with_transform(SegmentationTransform(processor))[0]
    flipped = rows.with_transform(SegmentationTransform(processor, flip_probability=1.0))[0]
    torch.testing.assert_close(flipped["pixel_values"], plain["pixel_values"].flip(-1))
    torch.testing.assert_close(flipped["mask_labels"], plain["mask_labels"].flip(-1))
    assert flipped["class_labels"].tolist() == plain["class_labels"].tolist()


def test_large_scale_jitter_crops_image_and_targets_together(rows, processor):
    # scale 2 of a 64-pixel square: the 64x64 images become 128x128, of which a random 64x64 window is kept
    jitter = SegmentationTransform(processor, large_scale_jitter_size=64, large_scale_jitter_scales=(2.0, 2.0), seed=3)
    twice = MaskDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 256}, stuff_label_ids=STUFF_LABEL_IDS)
    offsets = set()
    for index in range(len(rows)):
        jittered = rows.with_transform(jitter)[index]
        full = rows.with_transform(SegmentationTransform(twice))[index]
        assert jittered["pixel_values"].shape == (3, 64, 64) and full["pixel_values"].shape == (3, 128, 128)
        windows = [
            (top, left)
            for top in range(65)
            for left in range(65)
            if torch.equal(full["pixel_values"][:, top : top + 64, left : left + 64], jittered["pixel_values"])
        ]
        assert windows, "the jittered image is no window of the image resized twice"
        top, left = windows[0]
        offsets.add((top, left))
        # the targets are the same window of the resized targets, without the segments it leaves out
        cropped = full["mask_labels"][:, top : top + 64, left : left + 64]
        kept = cropped.flatten(1).any(1)
        torch.testing.assert_close(jittered["mask_labels"], cropped[kept])
        assert jittered["class_labels"].tolist() == full["class_labels"][kept].tolist()
    assert len(offsets) > 1  # the window moves


def test_large_scale_jitter_scales_images_into_the_range(rows, processor):
    jitter = SegmentationTransform(processor, large_scale_jitter_size=64, large_scale_jitter_scales=(0.25, 0.5))
    sizes = set()
    for _ in range(3):
        for example in rows.with_transform(jitter):
            valid = example["pixel_mask"].bool()  # the processor pads to a multiple of 32
            height, width = int(valid.any(1).sum()), int(valid.any(0).sum())
            assert 16 <= height == width <= 32  # square images, scaled by 0.25..0.5, never cropped
            assert example["mask_labels"].shape[-2:] == valid.shape
            assert example["mask_labels"].flatten(1).any(1).all()  # no empty targets
            sizes.add(height)
    assert len(sizes) > 2
    # the full range of the original: never larger than the window
    jitter = SegmentationTransform(processor, large_scale_jitter_size=48, flip_probability=0.5)
    for example in rows.with_transform(jitter):
        valid = example["pixel_mask"].bool()
        assert int(valid.any(1).sum()) <= 48 and int(valid.any(0).sum()) <= 48
        assert len(example["mask_labels"]) == len(example["class_labels"])


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"large_scale_jitter_size": 0}, "positive side length"),
        ({"large_scale_jitter_size": 64, "large_scale_jitter_scales": (2.0, 1.0)}, "0 < min <= max"),
        ({"large_scale_jitter_size": 64, "large_scale_jitter_scales": (0.0, 1.0)}, "0 < min <= max"),
        ({"large_scale_jitter_size": 64, "large_scale_jitter_scales": (0.5, 1.0, 2.0)}, "0 < min <= max"),
    ],
)
def test_large_scale_jitter_settings_are_checked(processor, arguments, message):
    with pytest.raises(ValueError, match=message):
        SegmentationTransform(processor, **arguments)


def test_ground_truth_segments_match_the_annotations(rows):
    row = rows[1]
    masks, labels = ground_truth_segments("panoptic", np.asarray(row["panoptic_map"]), row["segments_info"])
    assert sorted(labels.tolist()) == sorted(s["category_id"] for s in row["segments_info"])
    assert [int(m.sum()) for m in masks] == [s["area"] for s in sorted(row["segments_info"], key=lambda s: s["id"])]
    semantic_masks, semantic_labels = ground_truth_segments("semantic", semantic_map=np.asarray(row["semantic_map"]))
    for mask, label in zip(semantic_masks, semantic_labels):
        assert (
            mask
            == np.isin(
                np.asarray(row["panoptic_map"]), [s["id"] for s in row["segments_info"] if s["category_id"] == label]
            )
        ).all()
    with pytest.raises(ValueError, match="needs a `panoptic_map`"):
        ground_truth_segments("instance", semantic_map=np.asarray(row["semantic_map"]))


def test_collation_pads_to_the_largest_image():
    small = {
        "pixel_values": torch.ones(3, 32, 64),
        "pixel_mask": torch.ones(32, 64, dtype=torch.long),
        "mask_labels": torch.ones(2, 32, 64),
        "class_labels": torch.tensor([0, 3]),
    }
    large = {
        "pixel_values": torch.ones(3, 64, 32),
        "pixel_mask": torch.ones(64, 32, dtype=torch.long),
        "mask_labels": torch.ones(1, 64, 32),
        "class_labels": torch.tensor([1]),
    }
    batch = collate_segmentation_batch([small, large])
    assert batch["pixel_values"].shape == (2, 3, 64, 64)
    assert batch["pixel_mask"][0].sum() == 32 * 64 and batch["pixel_mask"][0, 32:].sum() == 0
    assert batch["pixel_values"][1, :, :, 32:].abs().sum() == 0
    assert [m.shape for m in batch["mask_labels"]] == [(2, 64, 64), (1, 64, 64)]
    assert batch["mask_labels"][0][:, 32:].sum() == 0  # padding is "not this object"
    assert [c.tolist() for c in batch["class_labels"]] == [[0, 3], [1]]
    assert set(collate_segmentation_batch([{k: small[k] for k in ("pixel_values", "pixel_mask")}])) == {
        "pixel_values",
        "pixel_mask",
    }


# ------------------------------------------------------------------------------------------------------ optimizer


def test_parameter_groups_follow_the_original_solver():
    model = MaskDinoForUniversalSegmentation(tiny_training_config(freeze_backbone_batch_norm=False))
    groups = optimizer_parameter_groups(
        model, learning_rate=1e-4, weight_decay=0.05, backbone_learning_rate_multiplier=0.1
    )
    names = {id(p): n for n, p in model.named_parameters()}
    grouped = [names[id(p)] for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(names.values())  # every parameter exactly once
    settings = {names[id(p)]: (group["lr"], group["weight_decay"]) for group in groups for p in group["params"]}
    assert settings["model.backbone.embedder.embedder.convolution.weight"] == pytest.approx((1e-5, 0.05))
    assert settings["model.backbone.embedder.embedder.normalization.weight"] == pytest.approx((1e-5, 0.0))
    assert settings["model.decoder.class_embed.weight"] == pytest.approx((1e-4, 0.05))
    assert settings["model.decoder.class_embed.bias"] == pytest.approx((1e-4, 0.05))
    assert settings["model.denoising_label_embeddings.weight"] == pytest.approx((1e-4, 0.0))
    layer_norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)]
    assert layer_norms and all(settings[f"{n}.weight"][1] == 0.0 for n in layer_norms)
    group_norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.GroupNorm)]
    assert group_norms and all(settings[f"{n}.bias"][1] == 0.0 for n in group_norms)
    optimizer = build_optimizer(model)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert sorted({group["lr"] for group in optimizer.param_groups}) == pytest.approx([1e-5, 1e-4])


def test_frozen_parameters_are_left_out():
    model = MaskDinoForUniversalSegmentation(tiny_training_config())
    for parameter in model.model.backbone.parameters():
        parameter.requires_grad_(False)
    groups = optimizer_parameter_groups(model)
    assert all(group["lr"] == pytest.approx(1e-4) for group in groups)


# ------------------------------------------------------------------------------------------------------ eval loss


def test_the_eval_mode_loss_is_the_final_prediction_part_of_the_training_loss(rows, processor):
    batch = collate_segmentation_batch([rows.with_transform(SegmentationTransform(processor))[i] for i in range(2)])
    # no query selection (no proposal losses) and no denoising: the training loss's first terms, `loss_ce` ...
    # `loss_giou`, are the final prediction's, computed with the same random points
    config = tiny_training_config(num_denoising=0, init_queries_from_encoder=False, mask_enhanced_box_init="none")
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(config).eval()
    with torch.no_grad():
        outputs = model(batch["pixel_values"], pixel_mask=batch["pixel_mask"])
        torch.manual_seed(1)
        loss = evaluation_loss(model, outputs, batch["mask_labels"], batch["class_labels"])
        torch.manual_seed(1)
        training = model.train()(**batch).loss_dict
    final_keys = ["loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou"]
    assert torch.isfinite(loss) and loss > 0
    torch.testing.assert_close(loss, sum(training[key] for key in final_keys))

    # with query selection, the encoder proposals' losses are added
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(tiny_training_config()).eval()
    with torch.no_grad():
        outputs = model(batch["pixel_values"], pixel_mask=batch["pixel_mask"])
        with_proposals = evaluation_loss(model, outputs, batch["mask_labels"], batch["class_labels"])
        final_only = model.criterion(
            {key: outputs[key] for key in ("class_queries_logits", "masks_queries_logits", "pred_boxes")},
            model.build_targets(batch["mask_labels"], batch["class_labels"], outputs.image_sizes),
        )
    assert with_proposals > sum(final_only.values())


# ------------------------------------------------------------------------------------------------------ models


def test_fine_tuning_a_checkpoint_on_a_new_label_set(tmp_path):
    torch.manual_seed(0)
    source = MaskDinoForUniversalSegmentation(tiny_training_config())
    source.save_pretrained(tmp_path / "checkpoint")
    MaskDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 160}).save_pretrained(tmp_path / "checkpoint")
    new_labels = {0: "cat", 1: "dog", 2: "road"}
    model, image_processor, backbone_info = build_model_and_image_processor(
        new_labels, [2], model_name_or_path=str(tmp_path / "checkpoint")
    )
    assert backbone_info is None
    assert model.config.id2label == new_labels and model.config.label2id["road"] == 2
    assert model.config.stuff_label_ids == [2] and model.criterion.stuff_label_ids == [2]
    assert model.model.decoder.class_embed.weight.shape == (3, 32)
    assert model.model.denoising_label_embeddings.weight.shape == (3, 32)
    # everything but the label-sized tensors comes from the checkpoint
    source_state = source.state_dict()
    for name, tensor in model.state_dict().items():
        if tensor.shape == source_state[name].shape:
            torch.testing.assert_close(tensor, source_state[name], msg=name)
    assert image_processor.size["shortest_edge"] == 96 and image_processor.stuff_label_ids == [2]


def test_a_model_from_scratch_from_a_config_file(tmp_path):
    model, image_processor, _ = build_model_and_image_processor(
        dict(enumerate(LABELS)),
        STUFF_LABEL_IDS,
        config_name=str(write_tiny_config(tmp_path / "config.json")),
        shortest_edge=128,
        longest_edge=256,
    )
    assert model.config.hidden_dim == TINY_TRAINING_CONFIG["hidden_dim"] and model.config.num_labels == 5
    assert image_processor.size == {"shortest_edge": 128, "longest_edge": 256}
    assert image_processor.stuff_label_ids == STUFF_LABEL_IDS
    with pytest.raises(ValueError, match="model_name_or_path"):
        build_model_and_image_processor({0: "a"}, [])


# ------------------------------------------------------------------------------------------------------ datasets


def test_datasets_from_disk_with_or_without_a_validation_split(tmp_path):
    directory = save_synthetic_dataset(tmp_path / "with", num_train=6, num_validation=2, image_size=48)
    dataset = load_segmentation_dataset(str(directory))
    assert dataset.num_rows == {"train": 6, "validation": 2}
    assert dataset_label_names(dataset["train"]) == list(LABELS)
    assert dataset_stuff_label_ids(dataset["train"]) == STUFF_LABEL_IDS

    generate_dataset(10, image_size=48).save_to_disk(str(tmp_path / "single"))
    dataset = load_segmentation_dataset(str(tmp_path / "single"), validation_fraction=0.2)
    assert dataset.num_rows == {"train": 8, "validation": 2}
    with pytest.raises(ValueError, match="no split 'training'"):
        load_segmentation_dataset(str(directory), train_split="training")


def test_datasets_that_load_dataset_reads(tmp_path):
    # parquet files in a directory: the `load_dataset` path, which Hub names also take
    rows = generate_dataset(3, image_size=48)
    (tmp_path / "parquet" / "data").mkdir(parents=True)
    rows.to_parquet(str(tmp_path / "parquet" / "data" / "train-00000-of-00001.parquet"))
    dataset = load_segmentation_dataset(str(tmp_path / "parquet"), validation_fraction=1 / 3)
    assert dataset.num_rows == {"train": 2, "validation": 1}
    # the class names survive the round trip through parquet
    assert dataset_label_names(dataset["train"]) == list(LABELS)
    assert np.asarray(dataset["train"][0]["panoptic_map"]).dtype == np.uint8


# ------------------------------------------------------------------------------------------------------ backbone


def tiny_backbone_config() -> ResNetConfig:
    return tiny_training_config().backbone_config


@pytest.mark.parametrize("source", ["resnet_model_dir", "classifier_dir", "state_dict_file", "wrapped_pth_file"])
def test_imagenet_resnet_weights_fill_the_backbone(tmp_path, source):
    torch.manual_seed(1)
    if source == "classifier_dir":
        pretrained = ResNetForImageClassification(tiny_backbone_config()).eval()
        reference = pretrained.resnet
    else:
        pretrained = reference = ResNetModel(tiny_backbone_config()).eval()
    with torch.no_grad():  # give the statistics values a fresh model would not have
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    if source in ("resnet_model_dir", "classifier_dir"):
        pretrained.save_pretrained(tmp_path / "imagenet")
        checkpoint = tmp_path / "imagenet"
    elif source == "state_dict_file":
        checkpoint = tmp_path / "resnet.safetensors"
        save_file({k: v.contiguous() for k, v in pretrained.state_dict().items()}, checkpoint)
    else:
        checkpoint = tmp_path / "resnet.pth"
        torch.save({"state_dict": pretrained.state_dict(), "epoch": 90}, checkpoint)

    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(tiny_training_config())
    others_before = {n: t.clone() for n, t in model.state_dict().items() if not n.startswith("model.backbone.")}
    info = load_backbone_weights(model, checkpoint)
    assert not info.missing_keys
    assert info.unused_keys == (["classifier.1.bias", "classifier.1.weight"] if source == "classifier_dir" else [])
    backbone_state = model.model.backbone.state_dict()
    assert len(info.loaded_keys) == len(backbone_state)
    for name, tensor in reference.state_dict().items():
        if name in backbone_state:
            torch.testing.assert_close(backbone_state[name], tensor, msg=name)
    for name, tensor in model.state_dict().items():
        if name in others_before:
            torch.testing.assert_close(tensor, others_before[name], msg=name)
    # the frozen backbone now computes the ImageNet model's features
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference(pixel_values, output_hidden_states=True).hidden_states[-1]
        actual = model.model.backbone(pixel_values).feature_maps[-1]
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_the_documented_from_scratch_recipe(tmp_path):
    # docs/training.md: backbone config and weights from one local save_pretrained directory
    torch.manual_seed(1)
    ResNetModel(tiny_backbone_config()).save_pretrained(tmp_path / "resnet")
    backbone_config = ResNetConfig.from_pretrained(
        tmp_path / "resnet", out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    config = tiny_training_config(backbone_config=backbone_config)
    model = MaskDinoForUniversalSegmentation(config)
    info = load_backbone_weights(model, tmp_path / "resnet")
    assert not info.missing_keys and not info.unused_keys
    assert len(info.loaded_keys) == len(model.model.backbone.state_dict())


def test_swin_weights_fill_a_swin_backbone(tmp_path):
    swin = SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        image_size=64,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    torch.manual_seed(1)
    SwinModel(swin).save_pretrained(tmp_path / "swin")
    model = MaskDinoForUniversalSegmentation(
        tiny_training_config(backbone_config=swin, encoder_in_features=["stage2", "stage3", "stage4"])
    )
    info = load_backbone_weights(model, tmp_path / "swin")
    # the per-stage output norms exist only in the backbone
    assert info.missing_keys and all(k.startswith("hidden_states_norms.") for k in info.missing_keys)
    # SwinBackbone nests the encoder under `swin.`; SwinModel's keys have no prefix, and are saved in the original
    # key format (`attention.self.query`), which the backbone class's own loading translates
    reference = SwinModel.from_pretrained(tmp_path / "swin").state_dict()
    backbone_state = model.model.backbone.state_dict()
    assert set(info.loaded_keys) == set(backbone_state) - set(info.missing_keys)
    assert {name.removeprefix("swin.") for name in info.loaded_keys} == set(reference)
    for name in info.loaded_keys:
        torch.testing.assert_close(backbone_state[name], reference[name.removeprefix("swin.")], msg=name)
    # a checkpoint of another backbone type is refused
    with pytest.raises(ValueError, match="holds a 'swin' model but the backbone is 'resnet'"):
        load_backbone_weights(MaskDinoForUniversalSegmentation(tiny_training_config()), tmp_path / "swin")


def test_backbone_checkpoints_of_another_architecture_are_refused(tmp_path):
    model = MaskDinoForUniversalSegmentation(tiny_training_config())
    wider = ResNetConfig(**{**tiny_backbone_config().to_dict(), "hidden_sizes": [16, 16, 32, 64]})
    ResNetModel(wider).save_pretrained(tmp_path / "wider")
    with pytest.raises(ValueError, match="does not match the backbone architecture"):
        load_backbone_weights(model, tmp_path / "wider")
    with pytest.raises(ValueError, match="No tensor of the checkpoint fits the backbone"):
        load_backbone_weights(model, {"head.weight": torch.zeros(2, 2)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        load_backbone_weights(model, tmp_path / "empty")


# ------------------------------------------------------------------------------------------------------ box-only data


def boxes_batch():
    """Two 64x64 images, each with a box-only object and (the first) a masked one."""
    masks = [torch.zeros(2, 64, 64), torch.zeros(1, 64, 64)]
    masks[0][0, 8:24, 8:30] = 1
    return {
        "pixel_values": torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)),
        "mask_labels": masks,
        "class_labels": [torch.tensor([0, 1]), torch.tensor([2])],
        # (center_x, center_y, width, height) relative to the image; the masked object's comes from its mask
        "target_boxes": [
            torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.7, 0.6, 0.2, 0.3]]),
            torch.tensor([[0.4, 0.5, 0.3, 0.2]]),
        ],
        "target_has_masks": [torch.tensor([True, False]), torch.tensor([False])],
    }


def test_box_only_targets_train_class_and_boxes_and_skip_the_mask_losses():
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(tiny_training_config())
    batch = boxes_batch()
    targets = model.build_targets(
        batch["mask_labels"], batch["class_labels"], torch.tensor([[64, 64]] * 2), batch["target_boxes"],
        batch["target_has_masks"],
    )  # fmt: skip
    # the masked object's box is its mask's, the box-only ones keep theirs
    np.testing.assert_allclose(targets[0]["boxes"][0].tolist(), [19 / 64, 16 / 64, 22 / 64, 16 / 64])
    np.testing.assert_allclose(targets[0]["boxes"][1].tolist(), [0.7, 0.6, 0.2, 0.3])
    assert model.criterion.loss_terms_per_image(targets) == [
        ("loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice"),
        ("loss_ce", "loss_bbox", "loss_giou"),
    ]
    model.train()
    outputs = model(**batch)
    assert torch.isfinite(outputs.loss)
    # the mask losses are those of the one masked object: the same as when the box-only objects are not there
    masked_only = model.criterion.loss_masks(
        outputs.masks_queries_logits, targets, model.criterion.matcher(
            outputs.class_queries_logits, outputs.masks_queries_logits, outputs.pred_boxes, targets
        ), torch.tensor(3.0),
    )  # fmt: skip
    assert masked_only["loss_mask"] > 0
    # a batch of box-only objects only: zero mask losses, yet gradients reach the box and class heads
    box_only = {**batch, "target_has_masks": [torch.zeros(2, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)]}
    box_only["target_boxes"] = [torch.tensor([[0.3, 0.25, 0.3, 0.25], [0.7, 0.6, 0.2, 0.3]]), batch["target_boxes"][1]]
    outputs = model(**box_only)
    assert outputs.loss_dict["loss_mask"].item() == 0.0 and outputs.loss_dict["loss_dice"].item() == 0.0
    assert outputs.loss_dict["loss_bbox"] > 0 and outputs.loss_dict["loss_ce"] > 0
    outputs.loss.backward()
    parameters = dict(model.named_parameters())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in parameters.values())
    for name in ("model.decoder.class_embed.weight", "model.decoder.bbox_embed.layers.2.weight"):
        assert parameters[name].grad.abs().sum() > 0, name


def test_the_matcher_ignores_the_masks_of_box_only_targets():
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(tiny_training_config())
    matcher = model.criterion.matcher
    logits, masks, boxes = torch.randn(1, 8, 5), torch.randn(1, 8, 16, 16), torch.rand(1, 8, 4) * 0.5 + 0.25
    target = {"labels": torch.tensor([0, 1]), "masks": torch.rand(2, 64, 64).round(), "boxes": torch.rand(2, 4) * 0.5}
    torch.manual_seed(1)
    with_masks = matcher._cost_matrix(logits[0], masks[0], boxes[0], target)
    torch.manual_seed(1)
    box_only = matcher._cost_matrix(
        logits[0], masks[0], boxes[0], {**target, "has_masks": torch.tensor([True, False])}
    )
    matcher.mask_cost, matcher.dice_cost = 0.0, 0.0
    without_mask_costs = matcher._cost_matrix(logits[0], masks[0], boxes[0], target)
    torch.testing.assert_close(box_only[:, 0], with_masks[:, 0])
    torch.testing.assert_close(box_only[:, 1], without_mask_costs[:, 1])


def test_the_processor_takes_box_only_coco_annotations(processor):
    image = np.zeros((32, 48, 3), dtype=np.uint8)
    objects = [
        {"id": 1, "category_id": 1, "bbox": [4, 8, 12, 16]},  # box only
        {"id": 2, "category_id": 0, "bbox": [20, 0, 10, 10], "segmentation": [[20, 0, 30, 0, 30, 10, 20, 10]]},
        {"id": 3, "category_id": 2, "bbox": [0, 0, 48, 32], "iscrowd": 1, "segmentation": []},  # ignored
        {"id": 4, "category_id": 1, "bbox": [40, 20, 8, 0]},  # no area: dropped
    ]
    encoded = processor(images=image, annotations={"image_id": 7, "annotations": objects}, return_tensors="pt")
    assert encoded["class_labels"][0].tolist() == [1, 0]
    assert encoded["target_has_masks"][0].tolist() == [False, True]
    np.testing.assert_allclose(encoded["target_boxes"][0][0].tolist(), [10 / 48, 16 / 32, 12 / 48, 16 / 32])
    assert encoded["mask_labels"][0][0].sum() == 0 and encoded["mask_labels"][0][1].sum() > 0
    # an image without annotations is a negative: no targets
    empty = processor(images=image, annotations={"annotations": []}, return_tensors="pt")
    assert empty["mask_labels"][0].shape[0] == 0 and empty["target_boxes"][0].shape == (0, 4)
    with pytest.raises(ValueError, match=r"annotation 0 \(id 9\) of image 7 needs `category_id` and `segmentation`"):
        processor(images=image, annotations={"image_id": 7, "annotations": [{"id": 9, "category_id": 1}]})


# ------------------------------------------------------------------------------------------------------ file readers


def write_coco(path, annotations, images=None, categories=None):
    import json

    images = images if images is not None else [{"id": 10, "file_name": "a.png", "height": 32, "width": 32}]
    categories = categories or [{"id": 3, "name": "cat"}, {"id": 9, "name": "dog"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@pytest.mark.parametrize(
    "annotation, message",
    [
        ({"id": 5, "image_id": 10, "category_id": 4, "bbox": [0, 0, 1, 1]}, "`category_id` 4 is not in `categories`"),
        ({"id": 5, "image_id": 11, "category_id": 3, "bbox": [0, 0, 1, 1]}, "`image_id` is not in `images`"),
        ({"id": 5, "image_id": 10, "category_id": 3}, "needs a `segmentation`"),
        ({"id": 5, "image_id": 10, "category_id": 3, "bbox": [0, 0, -1, 1]}, "negative width"),
        ({"id": 5, "image_id": 10, "category_id": 3, "segmentation": [[1, 2, 3]]}, "odd number"),
        ({"id": 5, "image_id": 10, "category_id": 3, "segmentation": {"counts": "x"}}, "needs `counts` and `size`"),
    ],
)
def test_malformed_coco_annotations_name_the_file_image_and_annotation(tmp_path, annotation, message):
    from PIL import Image

    from transformers_maskdino.training.formats import AnnotationError, read_coco_annotations

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    path = write_coco(tmp_path / "instances.json", [annotation])
    with pytest.raises(AnnotationError, match=f"{path}: annotation 5 of image {annotation['image_id']}.*{message}"):
        read_coco_annotations(path, tmp_path)


def test_coco_files_keep_images_without_annotations_and_map_category_ids(tmp_path):
    import json

    from PIL import Image

    from transformers_maskdino.training.formats import read_coco_annotations

    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 32)).save(tmp_path / name)
    images = [
        {"id": 10, "file_name": "a.png", "height": 32, "width": 32},
        {"id": 20, "file_name": "b.png", "height": 32, "width": 32},
    ]
    annotation = {"id": 1, "image_id": 10, "category_id": 9, "bbox": [1, 2, 3, 4], "iscrowd": 0}
    dataset, labels = read_coco_annotations(write_coco(tmp_path / "boxes.json", [annotation], images), tmp_path)
    assert labels.id2label == {0: "cat", 1: "dog"} and labels.dataset_category_ids == {0: 3, 1: 9}
    assert labels.task == "detection" and labels.stuff_label_ids == []
    assert dataset["image_id"] == [10, 20]
    assert [obj["category_id"] for obj in json.loads(dataset[0]["objects"])] == [1]
    assert json.loads(dataset[1]["objects"]) == []  # kept, as a negative
    with pytest.raises(FileNotFoundError, match="c.png"):
        read_coco_annotations(write_coco(tmp_path / "x.json", [], [{"id": 1, "file_name": "c.png"}]), tmp_path)


def test_the_category_mapping_is_kept_in_the_config(tmp_path):
    model, image_processor, _ = build_model_and_image_processor(
        {0: "cat", 1: "dog"}, [], config_name=str(write_tiny_config(tmp_path / "c.json")),
        dataset_category_ids={0: 3, 1: 9},
    )  # fmt: skip
    model.save_pretrained(tmp_path / "saved")
    image_processor.save_pretrained(tmp_path / "saved")
    from transformers_maskdino.training.formats import dataset_category_ids_of

    reloaded = MaskDinoForUniversalSegmentation.from_pretrained(tmp_path / "saved")
    assert dataset_category_ids_of(reloaded.config) == {0: 3, 1: 9}
    # fine-tuning the checkpoint on data with contiguous ids drops the old mapping
    model, _, _ = build_model_and_image_processor({0: "a", 1: "b"}, [], model_name_or_path=str(tmp_path / "saved"))
    assert dataset_category_ids_of(model.config) is None


def test_semantic_folders_pair_images_and_labels_by_name(tmp_path):
    import json

    from PIL import Image

    from transformers_maskdino.training.formats import read_semantic_folders

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "x.jpg")
    Image.fromarray(np.full((8, 8), 1, dtype=np.uint8)).save(tmp_path / "labels" / "x.png")
    with pytest.raises(FileNotFoundError, match="--id2label_file"):
        read_semantic_folders(tmp_path / "images", tmp_path / "labels")
    (tmp_path / "id2label.json").write_text(json.dumps({"0": "road", "1": "car"}))
    dataset, labels = read_semantic_folders(tmp_path / "images", tmp_path / "labels")
    assert labels.id2label == {0: "road", 1: "car"} and labels.task == "semantic"
    assert np.asarray(dataset[0]["semantic_map"]).max() == 1
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "y.png")
    with pytest.raises(FileNotFoundError, match="y.png"):
        read_semantic_folders(tmp_path / "images", tmp_path / "labels")


def test_crowd_panoptic_segments_are_ignored_in_training(processor):
    panoptic_map = np.zeros((64, 64, 3), dtype=np.uint8)
    panoptic_map[:32] = (1, 1, 0)  # segment 257
    panoptic_map[32:] = (2, 0, 0)  # segment 2, a crowd
    batch = {
        "image": [np.zeros((64, 64, 3), dtype=np.uint8)],
        "panoptic_map": [panoptic_map],
        "segments_info": [
            [{"id": 257, "category_id": 3, "isthing": False}, {"id": 2, "category_id": 0, "iscrowd": True}]
        ],
    }
    encoded = SegmentationTransform(processor, task="panoptic")(batch)
    assert encoded["class_labels"][0].tolist() == [3]
    assert encoded["mask_labels"][0][0, :32, :64].all() and encoded["mask_labels"][0][0].sum() == 32 * 64


def test_box_ap_rises_when_training_on_box_only_files(tmp_path, processor):
    """Detection fine-tuning on COCO files without masks: a tiny model trained on two images' boxes detects them
    (box AP of `post_process_object_detection`, as examples/evaluate.py --task detection scores it)."""
    from transformers_maskdino.training.evaluation import SegmentationEvaluator
    from transformers_maskdino.training.formats import read_coco_annotations
    from transformers_maskdino.training.synthetic_data import write_split_files

    paths = write_split_files(tmp_path, "coco-boxes", "train", 2, image_size=64, max_objects=2)
    dataset, labels = read_coco_annotations(paths["coco_annotations"], paths["images_dir"])
    assert labels.task == "detection"
    rows = dataset.with_transform(SegmentationTransform(processor, task="detection"))
    batch = collate_segmentation_batch([rows[0], rows[1]])
    assert not any(flags.any() for flags in batch["target_has_masks"])
    torch.manual_seed(0)
    model = MaskDinoForUniversalSegmentation(tiny_training_config(id2label=labels.id2label, stuff_label_ids=[]))
    optimizer = build_optimizer(model, learning_rate=3e-3, backbone_learning_rate_multiplier=1.0)

    def box_ap():
        model.eval()
        evaluator = SegmentationEvaluator(processor, num_labels=3, stuff_label_ids=[], tasks=("detection",))
        with torch.no_grad():
            outputs = model(batch["pixel_values"], pixel_mask=batch["pixel_mask"])
        evaluator.add(outputs, ground_truth_at_input_size(
            batch["mask_labels"], batch["class_labels"], outputs.image_sizes, batch["target_boxes"],
            batch["target_has_masks"],
        ))  # fmt: skip
        model.train()
        return evaluator.compute()["box_AP"]

    initial = box_ap()
    history = [initial]
    for step in range(300):
        torch.manual_seed(step)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        optimizer.step()
        optimizer.zero_grad()
        if step % 20 == 19:
            history.append(box_ap())
            if history[-1] >= initial + 0.3:
                break
    print("box AP every 20 steps:", history)
    assert history[-1] >= initial + 0.3, f"box AP every 20 steps: {history}"
