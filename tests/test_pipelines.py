# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""transformers pipelines on a saved Mask DINO directory: `image-segmentation` (semantic, instance, panoptic) and
`object-detection` give what the processor's post-processing gives on the model's outputs at the image size."""

import numpy as np
import pytest
import torch
from conftest import REFERENCE_DIR
from PIL import Image
from tiny_checkpoint import LABELS, STUFF_LABEL_IDS, save_tiny_checkpoint
from transformers import (
    AutoImageProcessor,
    AutoModelForImageSegmentation,
    AutoModelForObjectDetection,
    pipeline,
)

from transformers_maskdino import (
    MaskDinoForUniversalSegmentation,
    MaskDinoImageProcessor,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_maskdino"))


@pytest.fixture(scope="module")
def image():
    # 50x70 is resized to 64x90 and padded to 64x96, so the padding must be cropped for the masks to line up
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def direct(checkpoint, image):
    """The model's outputs on the image, computed without a pipeline."""
    model = MaskDinoForUniversalSegmentation.from_pretrained(checkpoint).eval()
    processor = MaskDinoImageProcessor.from_pretrained(checkpoint)
    with torch.no_grad():
        outputs = model(**processor(image, return_tensors="pt"))
    assert outputs.image_sizes.tolist() == [[64, 90]] and outputs.padded_image_sizes.tolist() == [[64, 96]]
    return processor, outputs


def test_auto_classes_resolve(checkpoint):
    assert type(AutoImageProcessor.from_pretrained(checkpoint)) is MaskDinoImageProcessor
    assert type(AutoModelForImageSegmentation.from_pretrained(checkpoint)) is MaskDinoForUniversalSegmentation
    assert type(AutoModelForObjectDetection.from_pretrained(checkpoint)) is MaskDinoForUniversalSegmentation


@pytest.fixture(scope="module")
def segmenter(checkpoint):
    return pipeline("image-segmentation", model=str(checkpoint))


def masks_of(results):
    return np.stack([np.array(result["mask"]) > 0 for result in results])


def test_semantic_pipeline(segmenter, direct, image):
    processor, outputs = direct
    expected = processor.post_process_semantic_segmentation(outputs, target_sizes=[(50, 70)])[0].numpy()
    results = segmenter(image, subtask="semantic")
    assert [r["label"] for r in results] == [LABELS[label] for label in np.unique(expected)]
    assert all(r["score"] is None and r["mask"].size == (70, 50) for r in results)
    for result, label in zip(results, np.unique(expected)):
        assert (np.array(result["mask"]) > 0).tolist() == (expected == label).tolist()


def test_instance_pipeline(segmenter, direct, image):
    processor, outputs = direct
    expected = processor.post_process_instance_segmentation(outputs, threshold=0.1, target_sizes=[(50, 70)])[0]
    results = segmenter(image, subtask="instance", threshold=0.1)
    assert len(results) == len(expected["segments_info"]) > 0
    assert [r["label"] for r in results] == [LABELS[s["label_id"]] for s in expected["segments_info"]]
    assert [r["score"] for r in results] == pytest.approx([s["score"] for s in expected["segments_info"]])
    assert not {r["label"] for r in results} & {LABELS[i] for i in STUFF_LABEL_IDS}
    masks = masks_of(results)
    assert masks.shape[1:] == (50, 70)
    for mask, segment in zip(masks, expected["segments_info"]):
        assert mask.tolist() == (expected["segmentation"] == segment["id"]).numpy().tolist()


def test_panoptic_pipeline_is_the_default_subtask(segmenter, direct, image):
    processor, outputs = direct
    expected = processor.post_process_panoptic_segmentation(outputs, threshold=0.0, target_sizes=[(50, 70)])[0]
    results = segmenter(image, threshold=0.0)
    assert len(results) == len(expected["segments_info"]) > 0
    assert [r["label"] for r in results] == [LABELS[s["label_id"]] for s in expected["segments_info"]]
    masks = masks_of(results)
    assert not (masks.sum(0) > 1).any()  # panoptic segments do not overlap
    for mask, segment in zip(masks, expected["segments_info"]):
        assert mask.tolist() == (expected["segmentation"] == segment["id"]).numpy().tolist()


def test_object_detection_pipeline(checkpoint, direct, image):
    processor, outputs = direct
    expected = processor.post_process_object_detection(outputs, 0.2, [(50, 70)])[0]
    detector = pipeline("object-detection", model=str(checkpoint))
    results = detector(image, threshold=0.2)
    assert len(results) == len(expected["scores"]) > 0
    assert [r["label"] for r in results] == [LABELS[label] for label in expected["labels"].tolist()]
    assert [r["score"] for r in results] == pytest.approx(expected["scores"].tolist())
    for result, box in zip(results, expected["boxes"].tolist()):
        assert [result["box"][key] for key in ("xmin", "ymin", "xmax", "ymax")] == [int(v) for v in box]


# ------------------------------------------------------------------------------------------- batched pipelines


def same_results(unbatched, batched, score_tolerance=1e-6):
    """Image for image the same labels, masks and boxes, and scores equal up to float32 batch effects."""
    assert len(unbatched) == len(batched)
    for single, together in zip(unbatched, batched):
        assert [r["label"] for r in single] == [r["label"] for r in together]
        assert [r["score"] for r in single] == pytest.approx([r["score"] for r in together], abs=score_tolerance)
        for a, b in zip(single, together):
            if "mask" in a:
                assert np.array_equal(np.array(a["mask"]), np.array(b["mask"]))
            if "box" in a:
                assert a["box"] == b["box"]


def random_images(shapes, seed=5):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)) for shape in shapes]


@pytest.mark.parametrize("subtask", ["panoptic", "instance", "semantic"])
def test_batched_segmentation_pipeline_equals_unbatched(segmenter, subtask):
    images = random_images([(50, 70)] * 3)
    kwargs = {"subtask": subtask} if subtask == "semantic" else {"subtask": subtask, "threshold": 0.0}
    unbatched = [segmenter(image, **kwargs) for image in images]
    assert all(len(results) > 0 for results in unbatched)
    same_results(unbatched, segmenter(images, batch_size=2, **kwargs))


def test_batched_pipelines_of_different_sizes_with_a_fixed_pad_size(checkpoint):
    # the pipeline concatenates the processed images, so images of different sizes need one padded size
    processor = MaskDinoImageProcessor.from_pretrained(checkpoint, pad_size={"height": 128, "width": 128})
    images = random_images([(50, 70), (80, 40), (60, 90)])
    segmenter = pipeline("image-segmentation", model=str(checkpoint), image_processor=processor)
    for subtask in ("panoptic", "instance", "semantic"):
        kwargs = {"subtask": subtask} if subtask == "semantic" else {"subtask": subtask, "threshold": 0.0}
        same_results([segmenter(image, **kwargs) for image in images], segmenter(images, batch_size=2, **kwargs))
    detector = pipeline("object-detection", model=str(checkpoint), image_processor=processor)
    same_results([detector(image, threshold=0.0) for image in images], detector(images, batch_size=2, threshold=0.0))


def test_batched_detection_pipeline_equals_unbatched(checkpoint):
    detector = pipeline("object-detection", model=str(checkpoint))
    images = random_images([(50, 70)] * 3)
    unbatched = [detector(image, threshold=0.0) for image in images]
    assert all(len(results) > 0 for results in unbatched)
    same_results(unbatched, detector(images, batch_size=2, threshold=0.0))


def test_outputs_hold_no_per_layer_lists_by_default(checkpoint, image):
    model = MaskDinoForUniversalSegmentation.from_pretrained(checkpoint).eval()
    inputs = MaskDinoImageProcessor.from_pretrained(checkpoint)(image, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
        everything = model(**inputs, output_hidden_states=True, output_auxiliary_logits=True)
    for name in ("auxiliary_outputs", "backbone_features", "encoder_inputs", "fpn_output", "multi_scale_features"):
        assert getattr(outputs, name) is None and name not in outputs
        assert getattr(everything, name) is not None
    assert len(everything.auxiliary_outputs) == model.config.decoder_layers
    assert len(everything.backbone_features) == 4 and len(everything.multi_scale_features) == 4
    torch.testing.assert_close(outputs.class_queries_logits, everything.class_queries_logits, rtol=0, atol=0)


# ----------------------------------------------------------------------------------- the pipelines' defaults


def test_pipeline_default_threshold_warns_once_with_the_checkpoints_threshold(checkpoint, image, caplog):
    import logging

    segmenter = pipeline("image-segmentation", model=str(checkpoint))
    with caplog.at_level(logging.WARNING, logger="transformers_maskdino"):
        default = segmenter(image, subtask="instance")
        segmenter(image, subtask="instance")
    warnings = [r.getMessage() for r in caplog.records if "default threshold=0.9" in r.getMessage()]
    assert len(warnings) == 1 and "Pass threshold=0.25" in warnings[0]
    # the advice is right: the checkpoint's threshold gives more
    assert len(segmenter(image, subtask="instance", threshold=0.25)) > len(default)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="transformers_maskdino"):
        pipeline("image-segmentation", model=str(checkpoint))(image, subtask="instance", threshold=0.25)
    assert not [r for r in caplog.records if "default threshold" in r.getMessage()]


def test_batched_pipelines_equal_unbatched_on_a_converted_fixture(converted_reference):
    """The converted r50_panoptic fixture (the original's weights layout, ResNet-50, every head) on its two reference
    images, batched and one by one, padded to one size as the pipeline needs for a batch."""
    directory = converted_reference("r50_panoptic")
    # the fixtures' input size (the converted processor resizes to the released 800 pixels)
    processor = MaskDinoImageProcessor.from_pretrained(
        directory, size={"shortest_edge": 160, "longest_edge": 1333}, pad_size={"height": 160, "width": 224}
    )
    images = [Image.open(REFERENCE_DIR / "r50_panoptic" / name).convert("RGB") for name in ("image.png", "image2.png")]
    segmenter = pipeline("image-segmentation", model=str(directory), image_processor=processor)
    for subtask in ("panoptic", "instance", "semantic"):
        kwargs = {"subtask": subtask} if subtask == "semantic" else {"subtask": subtask, "threshold": 0.0}
        unbatched = [segmenter(image, **kwargs) for image in images]
        assert all(len(results) > 0 for results in unbatched), subtask
        # ResNet-50 and 15 transformer layers: batched matrix products round differently, scores move by ~1e-5
        same_results(unbatched, segmenter(images, batch_size=2, **kwargs), score_tolerance=1e-4)
    detector = pipeline("object-detection", model=str(directory), image_processor=processor)
    unbatched = [detector(image, threshold=0.0) for image in images]
    assert all(len(results) > 0 for results in unbatched)
    same_results(unbatched, detector(images, batch_size=2, threshold=0.0), score_tolerance=1e-4)


def test_pipelines_accept_the_model_without_logging_an_error(checkpoint, caplog):
    # the pipelines compare the model class with transformers' name tables and log an error for classes not in them
    with caplog.at_level("ERROR"):
        pipeline("image-segmentation", model=str(checkpoint))
        pipeline("object-detection", model=str(checkpoint))
    assert not [record for record in caplog.records if record.levelname == "ERROR"], caplog.text
