# Copyright 2026 The transformers-maskdino authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""Mask DINO training loss: pure loss and cost functions, Hungarian matching and the hybrid (class, box, mask)
criterion. The denoising-query builder and the box helpers the model also uses live in `modeling_maskdino`."""

from collections.abc import Mapping

import torch
import torch.distributed as dist
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from transformers.image_transforms import center_to_corners_format
from transformers.loss.loss_for_object_detection import dice_loss, generalized_box_iou, sigmoid_focal_loss
from transformers.loss.loss_rf_detr import (
    pair_wise_dice_loss,
    sample_point,
    sample_points_using_uncertainty,  # noqa: F401 (importable from here, see the note at the end)
    sigmoid_cross_entropy_loss,
)

from .configuration_maskdino import MaskDinoConfig

# ---- Pure functions ----


# Adapted from transformers.models.mask2former.modeling_mask2former.pair_wise_sigmoid_cross_entropy_loss: divides by
# the number of points after the matmuls, as the original does (Mask2Former divides before), so that the matching
# costs round as the original's and near-tied assignments come out the same.
def pair_wise_sigmoid_cross_entropy_loss(inputs: Tensor, labels: Tensor) -> Tensor:
    """
    Mean binary cross-entropy over the points between every prediction and every target.

    Args:
        inputs (`torch.Tensor` of shape `(num_queries, num_points)`):
            Mask logits.
        labels (`torch.Tensor` of shape `(num_targets, num_points)`):
            Target mask values.

    Returns:
        `torch.Tensor` of shape `(num_queries, num_targets)`.
    """
    num_points = inputs.shape[1]
    # binary_cross_entropy_with_logits with all-ones and all-zeros targets, bit for bit, from one log-sigmoid
    log_sigmoid = nn.functional.logsigmoid(inputs)
    loss_negative = inputs - log_sigmoid
    loss_positive = log_sigmoid.neg_()  # in place: each (queries, points) temporary is fresh memory to page in
    return (loss_positive @ labels.T + loss_negative @ (1 - labels).T) / num_points


# Adapted from transformers.loss.loss_rf_detr.sample_points_using_uncertainty (same random draws, same points):
# returns grid_sample's [-1, 1] grid rather than [0, 1] points, so that the candidates are converted once and in
# place, and the predictions and targets are sampled on one grid (sample_point converts the points on every call).
def uncertain_point_grid(
    logits: Tensor, num_points: int, oversample_ratio: float, importance_sample_ratio: float
) -> Tensor:
    """
    Sampling grid of the most uncertain points of each mask (logits nearest 0, among `num_points *
    oversample_ratio` uniform candidates) plus uniform points.

    Args:
        logits (`torch.Tensor` of shape `(num_masks, 1, height, width)`):
            Mask logits.

    Returns:
        `torch.Tensor` of shape `(num_masks, 1, num_points, 2)`: `grid_sample` coordinates in [-1, 1], the
        `int(importance_sample_ratio * num_points)` uncertain points first (most uncertain first).
    """
    num_masks = logits.shape[0]
    candidates = torch.rand(num_masks, 1, int(num_points * oversample_ratio), 2, device=logits.device)
    candidates = candidates.mul_(2.0).sub_(1.0)  # 2 * x - 1, as sample_point computes it
    uncertainty = nn.functional.grid_sample(logits, candidates, align_corners=False)[:, 0, 0].abs_().neg_()
    num_uncertain_points = int(importance_sample_ratio * num_points)
    index = torch.topk(uncertainty, k=num_uncertain_points, dim=1)[1]
    grid = torch.gather(candidates, 2, index[:, None, :, None].expand(-1, -1, -1, 2))
    num_random_points = num_points - num_uncertain_points
    if num_random_points > 0:
        uniform = torch.rand(num_masks, 1, num_random_points, 2, device=logits.device)
        grid = torch.cat([grid, uniform.mul_(2.0).sub_(1.0)], dim=2)
    return grid


def pair_wise_sigmoid_focal_cost(logits: Tensor, target_labels: Tensor, alpha: float, gamma: float) -> Tensor:
    """
    Focal classification cost of assigning each query to each target (Deformable DETR / DINO matcher).

    Args:
        logits (`torch.Tensor` of shape `(num_queries, num_class_logits)`):
            Class logits (a trailing "no object" logit, if any, is never indexed).
        target_labels (`torch.Tensor` of shape `(num_targets,)`):
            Target class ids.

    Returns:
        `torch.Tensor` of shape `(num_queries, num_targets)`.
    """
    probs = logits.sigmoid()
    # 1e-8 keeps the log finite for saturated probabilities
    negative_cost = (1 - alpha) * (probs**gamma) * (-(1 - probs + 1e-8).log())
    positive_cost = alpha * ((1 - probs) ** gamma) * (-(probs + 1e-8).log())
    return positive_cost[:, target_labels] - negative_cost[:, target_labels]


def pair_wise_box_costs(pred_boxes: Tensor, target_boxes: Tensor) -> tuple[Tensor, Tensor]:
    """
    L1 and negative generalized-IoU costs between every predicted and every target box.

    Args:
        pred_boxes (`torch.Tensor` of shape `(num_queries, 4)`):
            Predicted (center_x, center_y, width, height) boxes.
        target_boxes (`torch.Tensor` of shape `(num_targets, 4)`):
            Target boxes in the same format.

    Returns:
        `tuple(torch.Tensor, torch.Tensor)`, each of shape `(num_queries, num_targets)`.
    """
    cost_l1 = torch.cdist(pred_boxes, target_boxes, p=1)
    cost_giou = -generalized_box_iou(center_to_corners_format(pred_boxes), center_to_corners_format(target_boxes))
    return cost_l1, cost_giou


# ---- Matcher ----


class MaskDinoHungarianMatcher(nn.Module):
    """
    One-to-one assignment of queries to targets minimising Mask DINO's hybrid cost: focal classification, L1 and
    generalized-IoU box costs, and sigmoid cross-entropy and dice mask costs on `num_points` random points shared by
    all queries and targets of an image. Costs are computed in float32; the assignment is scipy's
    `linear_sum_assignment`.

    Random draws: `rand(1, num_points, 2)` per image, also for images without targets.
    """

    def __init__(
        self,
        class_cost: float = 4.0,
        mask_cost: float = 5.0,
        dice_cost: float = 5.0,
        box_cost: float = 5.0,
        giou_cost: float = 2.0,
        num_points: int = 12544,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        if class_cost == 0 and mask_cost == 0 and dice_cost == 0 and box_cost == 0 and giou_cost == 0:
            raise ValueError("All matching costs are 0: set at least one of class/mask/dice/box/giou cost.")
        self.class_cost = class_cost
        self.mask_cost = mask_cost
        self.dice_cost = dice_cost
        self.box_cost = box_cost
        self.giou_cost = giou_cost
        self.num_points = num_points
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def forward(
        self, class_logits: Tensor, mask_logits: Tensor, pred_boxes: Tensor, targets: list[dict[str, Tensor]]
    ) -> list[tuple[Tensor, Tensor]]:
        """
        Args:
            class_logits (`torch.Tensor` of shape `(batch_size, num_queries, num_class_logits)`):
                Class logits.
            mask_logits (`torch.Tensor` of shape `(batch_size, num_queries, height, width)`):
                Mask logits.
            pred_boxes (`torch.Tensor` of shape `(batch_size, num_queries, 4)`):
                Predicted normalised (center_x, center_y, width, height) boxes.
            targets (`list[dict]`):
                Per image, `"labels"` `(num_targets,)`, `"masks"` `(num_targets, H, W)` and `"boxes"`
                `(num_targets, 4)`.

        Returns:
            `list[tuple[torch.LongTensor, torch.LongTensor]]`: per image, (query indices sorted ascending, target
            indices), `min(num_queries, num_targets)` pairs, on the CPU.
        """
        indices = []
        for batch_index, target in enumerate(targets):
            cost_matrix = self._cost_matrix(
                class_logits[batch_index].float(),
                mask_logits[batch_index].float(),
                pred_boxes[batch_index].float(),
                target,
            )
            # a NaN/inf cost is only chosen when nothing else is left
            max_value = torch.finfo(cost_matrix.dtype).max
            cost_matrix = torch.nan_to_num(cost_matrix, nan=max_value, posinf=max_value, neginf=max_value)
            query_indices, target_indices = linear_sum_assignment(cost_matrix.cpu())
            indices.append(
                (torch.as_tensor(query_indices, dtype=torch.int64), torch.as_tensor(target_indices, dtype=torch.int64))
            )
        return indices

    def _cost_matrix(self, class_logits: Tensor, mask_logits: Tensor, pred_boxes: Tensor, target: dict) -> Tensor:
        """(num_queries, num_targets) hybrid cost of one image."""
        device = mask_logits.device
        target_labels = target["labels"].to(device)
        # drawn for every image, with or without targets, to keep the random stream aligned with the original
        point_coordinates = torch.rand(1, self.num_points, 2, device=device)

        cost = self.class_cost * pair_wise_sigmoid_focal_cost(
            class_logits, target_labels, self.focal_alpha, self.focal_gamma
        )
        if self.box_cost != 0 or self.giou_cost != 0:
            cost_l1, cost_giou = pair_wise_box_costs(
                pred_boxes, target["boxes"].to(device=device, dtype=torch.float32)
            )
            cost = cost + self.box_cost * cost_l1 + self.giou_cost * cost_giou
        if self.mask_cost != 0 or self.dice_cost != 0:
            # the masks are the channels of a single image, so one grid serves all of them
            target_points = sample_point(
                target["masks"].to(device=device, dtype=torch.float32)[None], point_coordinates, align_corners=False
            )[0]
            pred_masks = mask_logits[None]
            if device.type == "cpu":
                # CPU grid_sample reads the queries of a point together from channels-last masks: 2.5x faster at
                # 400 queries, conversion included, same numbers
                pred_masks = pred_masks.contiguous(memory_format=torch.channels_last)
            pred_points = sample_point(pred_masks, point_coordinates, align_corners=False)[0]
            mask_costs = self.mask_cost * pair_wise_sigmoid_cross_entropy_loss(pred_points, target_points)
            mask_costs = mask_costs + self.dice_cost * pair_wise_dice_loss(pred_points, target_points)
            if "has_masks" in target:
                # box-only targets (detection data) are matched on their class and box alone
                mask_costs = mask_costs * target["has_masks"].to(device=device, dtype=mask_costs.dtype)
            cost = cost + mask_costs
        return cost


# ---- Criterion ----


def _base_loss_name(key: str) -> str:
    """`"loss_giou_dn_3"` -> `"loss_giou"`."""
    return "_".join(key.split("_")[:2])


class MaskDinoLoss(nn.Module):
    """
    Mask DINO's training loss. Every output set (final prediction, each auxiliary prediction, the encoder proposals)
    is Hungarian-matched to the targets and trained with classification (sigmoid focal, or cross-entropy with a
    down-weighted "no object" class for semantic models), L1 + GIoU box losses and point-sampled mask BCE + dice
    losses; denoising queries use their fixed assignment instead of the matching.

    Returned keys and weights are the original's: `loss_ce`, `loss_mask`, `loss_dice`, `loss_bbox`, `loss_giou` for
    the final prediction; suffix `_{i}` for `auxiliary_outputs[i]` (with an initial prediction, `i = 0` is the
    prediction made from the initial queries); `_interm` for the encoder proposals; `_dn` and `_dn_{i}` for the
    denoising queries (no `_dn_0` without query selection from the encoder, as in the original). Each key is
    multiplied by the weight of its base loss (`class_weight`, `mask_weight`, `dice_weight`, `box_weight`,
    `giou_weight`).

    The module holds no tensors (the "no object" class weight is built on the fly), so nothing needs initialising
    after meta-device loading.
    """

    def __init__(self, config: MaskDinoConfig):
        super().__init__()
        self.num_labels = config.num_labels
        self.use_semantic_cross_entropy = config.use_semantic_cross_entropy
        self.no_object_weight = config.no_object_weight
        self.focal_alpha = config.focal_alpha
        self.focal_gamma = config.focal_gamma
        self.num_points = config.train_num_points
        self.oversample_ratio = config.oversample_ratio
        self.importance_sample_ratio = config.importance_sample_ratio
        self.use_auxiliary_loss = config.use_auxiliary_loss
        self.use_box_loss = config.use_box_loss
        self.supervise_stuff_boxes = config.supervise_stuff_boxes
        self.stuff_label_ids = list(config.stuff_label_ids)
        self.num_denoising = config.num_denoising
        self.denoise_masks = config.denoise_masks
        self.weight_dict = {
            "loss_ce": config.class_weight,
            "loss_mask": config.mask_weight,
            "loss_dice": config.dice_weight,
            "loss_bbox": config.box_weight,
            "loss_giou": config.giou_weight,
        }
        self.matcher = MaskDinoHungarianMatcher(
            class_cost=config.class_cost,
            mask_cost=config.mask_cost,
            dice_cost=config.dice_cost,
            box_cost=config.box_cost,
            giou_cost=config.giou_cost,
            num_points=config.train_num_points,
            focal_alpha=config.focal_alpha,
            focal_gamma=config.focal_gamma,
        )

    # ---- per-loss methods ----

    @staticmethod
    def _prediction_indices(indices: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        batch_index = torch.cat([torch.full_like(source, i) for i, (source, _) in enumerate(indices)])
        query_index = torch.cat([source for source, _ in indices])
        return batch_index, query_index

    @staticmethod
    def _matched_targets(targets: list[dict], indices: list[tuple[Tensor, Tensor]], key: str) -> Tensor:
        return torch.cat(
            [target[key][target_index.to(target[key].device)] for target, (_, target_index) in zip(targets, indices)]
        )

    def loss_labels(self, class_logits: Tensor, targets: list[dict], indices: list, num_masks: Tensor) -> dict:
        """`loss_ce`: sigmoid focal loss over `num_labels` logits, or cross-entropy with the no-object weight."""
        class_logits = class_logits.float()
        batch_size, num_queries = class_logits.shape[:2]
        device = class_logits.device
        batch_index, query_index = self._prediction_indices(indices)
        batch_index, query_index = batch_index.to(device), query_index.to(device)
        target_classes = torch.full((batch_size, num_queries), self.num_labels, dtype=torch.long, device=device)
        target_classes[batch_index, query_index] = self._matched_targets(targets, indices, "labels").to(device)

        if self.use_semantic_cross_entropy:
            class_weights = torch.ones(self.num_labels + 1, dtype=class_logits.dtype, device=device)
            class_weights[-1] = self.no_object_weight
            loss = nn.functional.cross_entropy(class_logits.transpose(1, 2), target_classes, class_weights)
            return {"loss_ce": loss}

        # one-hot over num_labels + 1 columns so that "no object" rows end up all zeros once the last is dropped
        one_hot = nn.functional.one_hot(target_classes, self.num_labels + 1)[..., : class_logits.shape[-1]]
        # transformers' focal loss averages over the queries; the original then multiplies by their number, as
        # Deformable DETR does
        loss = (
            sigmoid_focal_loss(
                class_logits, one_hot.to(class_logits.dtype), num_masks, alpha=self.focal_alpha, gamma=self.focal_gamma
            )
            * num_queries
        )
        return {"loss_ce": loss}

    def loss_boxes(self, pred_boxes: Tensor, targets: list[dict], indices: list, num_masks: Tensor) -> dict:
        """`loss_bbox` (L1) and `loss_giou`, summed over matched pairs and divided by `num_masks`. Stuff targets are
        left out unless `supervise_stuff_boxes` (the normaliser still counts them)."""
        device = pred_boxes.device
        batch_index, query_index = self._prediction_indices(indices)
        source_boxes = pred_boxes[batch_index.to(device), query_index.to(device)].float()
        target_boxes = self._matched_targets(targets, indices, "boxes").to(device=device, dtype=torch.float32)
        if self.stuff_label_ids and not self.supervise_stuff_boxes:
            target_labels = self._matched_targets(targets, indices, "labels").to(device)
            is_thing = ~torch.isin(target_labels, torch.tensor(self.stuff_label_ids, device=device))
            source_boxes, target_boxes = source_boxes[is_thing], target_boxes[is_thing]
        loss_bbox = nn.functional.l1_loss(source_boxes, target_boxes, reduction="none").sum() / num_masks
        giou = torch.diag(
            generalized_box_iou(center_to_corners_format(source_boxes), center_to_corners_format(target_boxes))
        )
        loss_giou = (1 - giou).sum() / num_masks
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def loss_masks(
        self,
        mask_logits: Tensor,
        targets: list[dict],
        indices: list,
        num_masks: Tensor,
        mask_embeddings: Tensor | None = None,
        mask_features: Tensor | None = None,
    ) -> dict:
        """`loss_mask` (BCE) and `loss_dice` on uncertainty-sampled points of each matched pair. Given the factors of
        `mask_logits` (`mask_embeddings`, `mask_features`), the pairs' masks are computed from them, so that the
        backward pass works on their rows only, not on a zero-filled gradient of every query's mask."""
        device = mask_logits.device
        indices = self._pairs_with_masks(targets, indices)
        batch_index, query_index = self._prediction_indices(indices)
        if batch_index.numel() == 0:
            # keeps the graph connected (DDP) when no image of the batch has a target
            zero = mask_logits.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        # float32: the point coordinates are float32 (grid_sample wants one dtype) and the losses are computed in it
        if mask_embeddings is not None and mask_features is not None:
            pair_embeddings = mask_embeddings[batch_index.to(device), query_index.to(device)]
            pairs_per_image = [len(source) for source, _ in indices]  # the pairs are in image order
            pred_masks = torch.cat(
                [
                    embeddings @ features.flatten(1)
                    for embeddings, features in zip(pair_embeddings.split(pairs_per_image), mask_features.unbind(0))
                ]
            )
            pred_masks = pred_masks.view(-1, 1, *mask_features.shape[-2:]).float()  # num_pairs, 1, h, w
        else:
            pred_masks = mask_logits[batch_index.to(device), query_index.to(device)].float()[:, None]

        # No upsampling: points are in normalised coordinates, so predictions (1/4 resolution) and targets (input
        # resolution) are sampled at the same places.
        with torch.no_grad():
            point_grid = uncertain_point_grid(
                pred_masks, self.num_points, self.oversample_ratio, self.importance_sample_ratio
            )
            point_labels = self._matched_target_points(targets, indices, point_grid)
        point_logits = nn.functional.grid_sample(pred_masks, point_grid, align_corners=False)[:, 0, 0]
        return {
            "loss_mask": sigmoid_cross_entropy_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    @staticmethod
    def _pairs_with_masks(targets: list[dict], indices: list) -> list:
        """The matched pairs whose target has a mask: box-only targets (detection data) add no mask loss."""
        kept = []
        for target, (source, target_index) in zip(targets, indices):
            if "has_masks" in target:
                keep = target["has_masks"].cpu()[target_index]
                source, target_index = source[keep], target_index[keep]
            kept.append((source, target_index))
        return kept

    @staticmethod
    def _matched_target_points(targets: list[dict], indices: list, point_grid: Tensor) -> Tensor:
        """Each pair's target mask (zero-padded at the bottom/right to the batch's largest size) sampled on the pair's
        grid, `(num_pairs, num_points)`. A target of several pairs (each denoising group repeats every target) is
        sampled in one `grid_sample` batch entry for all of them, not copied at full size per pair."""
        device, num_points = point_grid.device, point_grid.shape[2]
        height = max(target["masks"].shape[-2] for target in targets)
        width = max(target["masks"].shape[-1] for target in targets)
        pair_grids = point_grid[:, 0].split([len(target_index) for _, target_index in indices])
        points = []
        # per image: its masks are sampled in place, not copied into one tensor for the batch
        for target, (_, target_index), pair_grid in zip(targets, indices, pair_grids):
            if len(target_index) == 0:
                continue
            masks = target["masks"].to(device=device, dtype=torch.float32)
            if masks.shape[-2:] != (height, width):
                masks = nn.functional.pad(masks, (0, width - masks.shape[-1], 0, height - masks.shape[-2]))
            target_index = target_index.to(device=device, dtype=torch.int64)
            # slot: which of its target's pairs this pair is
            pairs_per_target = torch.bincount(target_index, minlength=len(masks))
            order = torch.argsort(target_index, stable=True)
            first_pair_of_target = torch.cumsum(pairs_per_target, 0) - pairs_per_target
            slot = torch.empty_like(target_index)
            slot[order] = torch.arange(len(order), device=device) - first_pair_of_target[target_index[order]]
            num_slots = int(pairs_per_target.max())
            target_grid = pair_grid.new_zeros(len(masks), num_slots, num_points, 2)
            target_grid[target_index, slot] = pair_grid
            sampled = nn.functional.grid_sample(
                masks[:, None], target_grid.view(len(masks), 1, num_slots * num_points, 2), align_corners=False
            )
            points.append(sampled.view(len(masks), num_slots, num_points)[target_index, slot])
        return torch.cat(points)

    # ---- per-branch methods ----

    def _losses_for_output_set(
        self,
        output: Mapping,
        targets: list[dict],
        indices: list,
        num_masks: Tensor,
        mask_features: Tensor | None,
        with_masks: bool,
        with_boxes: bool,
    ) -> dict[str, Tensor]:
        """Unweighted losses of one output set given its assignment (the original's order: labels, masks, boxes)."""
        losses = self.loss_labels(output["class_queries_logits"], targets, indices, num_masks)
        if with_masks:
            mask_embeddings = output.get("mask_embeddings")
            losses.update(
                self.loss_masks(
                    output["masks_queries_logits"], targets, indices, num_masks, mask_embeddings, mask_features
                )
            )
        if with_boxes:
            losses.update(self.loss_boxes(output["pred_boxes"], targets, indices, num_masks))
        return losses

    def _matching_losses(
        self, output: Mapping, targets: list[dict], num_masks: Tensor, mask_features: Tensor | None
    ) -> dict:
        """Hungarian matching then losses, for the final, an auxiliary or the encoder-proposal output set."""
        indices = self.matcher(
            output["class_queries_logits"], output["masks_queries_logits"], output["pred_boxes"], targets
        )
        return self._losses_for_output_set(
            output, targets, indices, num_masks, mask_features, with_masks=True, with_boxes=self.use_box_loss
        )

    def _denoising_losses(
        self,
        output: Mapping | None,
        targets: list[dict],
        num_masks: Tensor,
        denoising_meta_values: dict | None,
        mask_features: Tensor | None,
    ) -> dict:
        """Losses of the denoising queries of one decoder output, on their fixed assignment and normalised by
        `num_masks * num_denoising_groups`; zeros (same keys) when the batch had no denoising group."""
        if output is None or denoising_meta_values is None:
            names = (
                ["loss_ce"] + (["loss_mask", "loss_dice"] if self.denoise_masks else []) + ["loss_bbox", "loss_giou"]
            )
            return {name: num_masks.new_zeros(()) for name in names}
        indices = denoising_meta_values["matching_indices"]
        num_groups = denoising_meta_values["num_denoising_groups"]
        # the original always trains the denoising boxes, whatever `use_box_loss` says
        return self._losses_for_output_set(
            output,
            targets,
            indices,
            num_masks * num_groups,
            mask_features,
            with_masks=self.denoise_masks,
            with_boxes=True,
        )

    # ---- entry points ----

    @staticmethod
    def loss_terms_per_image(targets: list[dict]) -> list[tuple[str, ...]]:
        """The base loss terms each image's targets contribute to: class and box terms for every image with a
        target, mask terms only for images with at least one target that has a mask (box-only detection targets
        have `"has_masks"` False). An image without targets contributes to the class term alone, as a negative."""
        terms = []
        for target in targets:
            has_masks = target.get("has_masks", torch.ones(len(target["labels"]), dtype=torch.bool))
            image_terms = ("loss_ce",)
            if len(target["labels"]):
                image_terms += ("loss_bbox", "loss_giou")
            if bool(has_masks.any()):
                image_terms += ("loss_mask", "loss_dice")
            terms.append(image_terms)
        return terms

    def get_num_masks(self, targets: list[dict], device: torch.device) -> Tensor:
        """Number of target masks in the batch, averaged over processes (all-reduced when torch.distributed is
        initialised), clamped to at least 1."""
        num_masks = torch.as_tensor(float(sum(len(target["labels"]) for target in targets)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num_masks)
            num_masks = num_masks / dist.get_world_size()
        return torch.clamp(num_masks, min=1)

    def forward(
        self, outputs: Mapping, targets: list[dict[str, Tensor]], denoising_meta_values: dict | None = None
    ) -> dict[str, Tensor]:
        """
        Args:
            outputs (`dict`):
                `class_queries_logits` `(batch_size, num_queries, num_class_logits)`, `masks_queries_logits`
                `(batch_size, num_queries, height, width)`, `pred_boxes` `(batch_size, num_queries, 4)`;
                `auxiliary_outputs` (list of dicts with the same keys, earliest first); `encoder_proposal_outputs`
                (dict with the same keys, or `None` without query selection); `denoising_outputs` (dict with the same
                keys and its own `auxiliary_outputs`, or `None`); optionally `mask_features` and, in each set,
                `mask_embeddings` (see `loss_masks`).
            targets (`list[dict]`):
                Per image, `"labels"` (`(num_targets,)` long), `"masks"` (`(num_targets, padded_height,
                padded_width)`, zero-padded to the input size) and `"boxes"` (`(num_targets, 4)` (center_x, center_y,
                width, height) normalised by the unpadded image size).
            denoising_meta_values (`dict`, *optional*):
                As returned by `build_denoising_queries`.

        Returns:
            `dict[str, torch.Tensor]`: weighted scalar losses (see the class docstring for the keys).
        """
        num_masks = self.get_num_masks(targets, outputs["class_queries_logits"].device)
        denoising_outputs = outputs.get("denoising_outputs")
        with_denoising = self.num_denoising > 0
        encoder_proposal_outputs = outputs.get("encoder_proposal_outputs")
        mask_features = outputs.get("mask_features")

        # Branch order = the original's order of random draws: final, its denoising part, then each auxiliary set
        # followed by its denoising part, then the encoder proposals.
        losses = self._matching_losses(outputs, targets, num_masks, mask_features)
        if with_denoising:
            dn_losses = self._denoising_losses(
                denoising_outputs, targets, num_masks, denoising_meta_values, mask_features
            )
            losses.update({f"{key}_dn": value for key, value in dn_losses.items()})

        if self.use_auxiliary_loss:
            denoising_auxiliary = (denoising_outputs or {}).get("auxiliary_outputs") or []
            # The original supervises the denoising part of the initial prediction only when the initial queries come
            # from the encoder.
            first_denoising_layer = 0 if encoder_proposal_outputs is not None else 1
            for i, auxiliary_output in enumerate(outputs.get("auxiliary_outputs") or []):
                aux_losses = self._matching_losses(auxiliary_output, targets, num_masks, mask_features)
                losses.update({f"{key}_{i}": value for key, value in aux_losses.items()})
                if with_denoising and i >= first_denoising_layer:
                    dn_output = denoising_auxiliary[i] if i < len(denoising_auxiliary) else None
                    dn_losses = self._denoising_losses(
                        dn_output, targets, num_masks, denoising_meta_values, mask_features
                    )
                    losses.update({f"{key}_dn_{i}": value for key, value in dn_losses.items()})

        if encoder_proposal_outputs is not None:
            interm_losses = self._matching_losses(encoder_proposal_outputs, targets, num_masks, mask_features)
            losses.update({f"{key}_interm": value for key, value in interm_losses.items()})

        return {key: value * self.weight_dict[_base_loss_name(key)] for key, value in losses.items()}


# dice_loss, sigmoid_focal_loss, sigmoid_cross_entropy_loss, pair_wise_dice_loss, sample_point and
# sample_points_using_uncertainty are transformers' own; they stay importable from here
__all__ = [
    "MaskDinoHungarianMatcher",
    "MaskDinoLoss",
    "pair_wise_box_costs",
    "pair_wise_sigmoid_cross_entropy_loss",
    "pair_wise_sigmoid_focal_cost",
]


def __getattr__(name: str):
    # Deprecated location: these model-side helpers moved to `modeling_maskdino`; the alias goes in the next release.
    if name in ("build_denoising_queries", "inverse_sigmoid", "masks_to_boxes", "target_boxes_from_masks"):
        import warnings

        from .modeling_maskdino import (
            build_denoising_queries,
            inverse_sigmoid,
            masks_to_boxes,
            target_boxes_from_masks,
        )

        moved = {
            "build_denoising_queries": build_denoising_queries,
            "inverse_sigmoid": inverse_sigmoid,
            "masks_to_boxes": masks_to_boxes,
            "target_boxes_from_masks": target_boxes_from_masks,
        }
        warnings.warn(
            f"`transformers_maskdino.loss_maskdino.{name}` moved to `transformers_maskdino.modeling_maskdino.{name}`.",
            FutureWarning,
            stacklevel=2,
        )
        return moved[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
