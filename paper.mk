# The paper's pipelines (Feng, Wang, Liu 2021, "Deep graph cut network for weakly-supervised
# semantic segmentation"), included by the Makefile:
#
#   make voc  VOC_ROOT=/path/to/VOCdevkit/VOC2012 [DEVICE=cuda] [VOC_OUT=runs/voc]
#             [SEEDS=localization_cues-sal.pickle SEEDS_LIST=input_list.txt]
#                                 import DSRG's cues instead of cam + saliency; the list (DSRG's
#                                 training/experiment/seed_mc/list/input_list.txt) maps the
#                                 pickle's index keys to image ids
#             [SAL_DIR=drfi_pngs/]                   import saliency PNGs (e.g. DRFI) instead of MB+
#   make coco COCO_ROOT=/path/to/coco [DEVICE=cuda] [COCO_OUT=runs/coco]
#             (COCO_ROOT holds train2014/, val2014/ and annotations/instances_{train,val}2014.json;
#              COCO_SEEDS= and COCO_SAL_DIR= do what SEEDS= and SAL_DIR= do for VOC)
#
# Steps (every one a file target under the output folder, its command printed by make):
#   cams_<train>.h5 -> saliency_<train>.h5 -> seeds_<train>.h5 -> train/final.pt
#   -> pred_<val>/pred.h5 -> eval_<val>.json; retrain/final.pt -> retrain_pred_<val>/pred.h5
#   -> eval_retrain_<val>.json; report.txt, one table with the rows WSSS papers report:
#   pseudo-label quality on the report split (VOC: `train`, its 1,464 images with full masks,
#   a subset of train_aug; COCO: train2014), each row named by its protocol:
#     eval_cams_<r>.json    CAMs, background threshold chosen by a sweep (not with SEEDS=)
#     eval_seeds_<r>.json   seeds (precision and coverage of the labelled pixels too)
#     eval_labels_<r>.json  graph-cut proxy labels of the trained model (graphcut-label)
#     eval_pseudo_<r>.json  the retraining masks: the trained model's multi-scale test + CRF
#   and final quality on val: eval_<val>.json, eval_retrain_<val>.json.
# Partial goals: voc-seeds, voc-train (up to eval_val.json), voc-retrain; coco-* likewise.
#
# Reruns redo only what changed: a step reruns when an input file is newer or when its options
# changed (each step's options are kept in <out>/.opts/<step>; DEVICE and PAPER_WORKERS do not
# count). A step whose last run was interrupted continues (--resume) when rerun with the same
# options and inputs; otherwise it starts again (--overwrite).

# Classifier for the CAM seeds. The paper took its seeds from DSRG: a modified VGG16 (SEC's
# DeepLab-VGG16 with dilated conv5 and extra layers) trained in Caffe, plus DRFI saliency. That
# exact network and its init are not what torchvision ships; a plain VGG16 with global average
# pooling gives coarser CAMs than ResNet-50, the usual CAM network of later WSSS work (IRN and
# after), whose ImageNet weights torchvision provides. For the paper's own cues use SEEDS=; for
# the paper's network family set PAPER_CAM_BACKBONE=vgg16.
PAPER_CAM_BACKBONE ?= resnet50
PAPER_CAM_WEIGHTS ?= imagenet
# Size and schedule apart from the method, so a smaller run (the smoke test in
# tests/test_voc_pipeline.py: tiny network, 1 epoch, small crops) overrides only these.
PAPER_CAM_SCHEDULE ?= --epochs 5 --batch-size 16 --crop 321
PAPER_CAM_OPTS ?= $(PAPER_CAM_SCHEDULE) --lr 0.01 --scales 0.5,1,1.5,2
# Segmentation network init (imagenet, none, or a weights file on a machine without internet).
PAPER_SEG_WEIGHTS ?= imagenet
# The paper's training and test protocol, as the published code (hustvl/DGCN) runs it; these are
# also the CLI defaults, spelled out so the printed commands document the run: graph cut (K=9,
# theta=0.7, C1=10, log10 unaries, raw layer1 + layer3 features, background cut too, the cut
# overriding seeds where H > theta), seeding loss normalised per image + CRF boundary loss with
# DSRG's ratio clip, LargeFOV head (one 3x3 conv, dilation 12), BatchNorm scale/shift frozen,
# crop + mirror without rescaling, SGD lr 5e-4 (x10 head, x0.3 every 3 epochs), 200 warm-up
# iterations, batch 16, 321 crops, 7 epochs; test as the published evaluate.py does: logits summed
# over scales 0.75, 1, 1.25, no flip, bilinear upsampling, dense CRF (the paper itself names only
# bilinear upsampling and the CRF: no scales, no flip).
# Where this still trains differently from the published code (README, "Fidelity"):
# - seeds: our CAMs + MB+ saliency, unless SEEDS= gives DSRG's localization_cues-sal.pickle,
#   which is what the published code reads;
# - network: torchvision's ResNet-101 (stride in the 3x3 conv, RGB input normalised by ImageNet
#   mean and std) where the published one is the Caffe-style ResNet (stride in the first 1x1
#   conv, BGR input minus the mean) loaded from the same torchvision weights;
# - bf16 autocast on CUDA (the published code trains in fp32: add --no-amp to match);
# - one process of batch 16 instead of SyncBatchNorm over several GPUs (same batch statistics);
# - the boundary-loss CRF sees the crop resized with PIL (bilinear, antialiased) instead of
#   scipy's order-1 zoom; probabilities are exact log-softmax instead of softmax + 1e-7;
PAPER_EXPANDER_OPTS ?= --expander graphcut --expander-opt log_base=10 --expander-opt cut_background=true
PAPER_SCHEDULE ?= --epochs 7 --batch-size 16 --crop 321 --warmup 200
PAPER_TRAIN_OPTS ?= $(PAPER_EXPANDER_OPTS) \
	--boundary-loss crf --boundary-clip 0.05,20 --seed-loss-per-image --head largefov --freeze-bn --rescale 1 \
	$(PAPER_SCHEDULE) --lr 5e-4
# Retraining as DSRG's second step, which the paper says it follows (speedinghzl/DSRG
# seed_mc/run.sh, solver-f.prototxt): from the trained model's weights, on its multi-scale
# test (logits summed, no flip) + CRF, cross-entropy, lr 1e-3 with poly decay (power 0.9), no
# warm-up, 20,000 iterations at batch 10 = 19 epochs of train_aug. These are `retrain`'s defaults,
# spelled out here so the printed command documents the run.
PAPER_RETRAIN_SCHEDULE ?= --epochs 19 --batch-size 10 --crop 321
PAPER_RETRAIN_OPTS ?= --head largefov --freeze-bn --rescale 1 --init teacher --combine logits --no-flip \
	--lr 1e-3 --lr-schedule poly --poly-power 0.9 --warmup 0 $(PAPER_RETRAIN_SCHEDULE)
PAPER_TEST_OPTS ?= --scales 0.75,1,1.25 --combine logits --no-flip --crf
# Data-loader / CRF worker processes: a runtime choice, not part of a step's options.
PAPER_WORKERS ?= 4

VOC_OUT ?= runs/voc
VOC_TRAIN_SPLIT ?= train_aug
VOC_VAL_SPLIT ?= val
VOC_SEG_BACKBONE ?= resnet101
VOC_REPORT_SPLIT ?= train
VOC_SEEDS ?= $(SEEDS)
VOC_SEEDS_LIST ?= $(SEEDS_LIST)
VOC_SAL_DIR ?= $(SAL_DIR)
VOC_ROOT_HINT := run `make voc VOC_ROOT=/path/to/VOCdevkit/VOC2012` (the folder with JPEGImages/, SegmentationClassAug/ and ImageSets/Segmentation/train_aug.txt; `dgcn prepare voc --root DIR --download` makes it)

COCO_OUT ?= runs/coco
COCO_TRAIN_SPLIT ?= train2014
COCO_VAL_SPLIT ?= val2014
# The paper's COCO setting (as DSRG's): a VGG16 DeepLab.
COCO_SEG_BACKBONE ?= vgg16
COCO_REPORT_SPLIT ?= $(COCO_TRAIN_SPLIT)
COCO_SEEDS ?=
COCO_SEEDS_LIST ?=
COCO_SAL_DIR ?=
COCO_ROOT_HINT := run `make coco COCO_ROOT=/path/to/coco` (the folder with train2014/, val2014/ and annotations/instances_train2014.json, instances_val2014.json; `dgcn prepare coco --root DIR --download` makes it)

# $(call paper_need,VAR): the value of VAR, or stop with a message saying how to set it.
# Expanded only in recipes, so only the pipeline that needs VAR asks for it.
paper_need = $(or $(strip $($(1))),$(error $(1) is not set: $($(1)_HINT)))

# --resume or --overwrite: see `redo` in the Makefile
paper_redo = $(call redo,$(1))

# graph-cut labels for the report rows: the expander as trained
PAPER_LABEL_OPTS ?= $(PAPER_EXPANDER_OPTS)

# $(call paper_pipeline,NAME,OUT,TRAIN_SPLIT,VAL_SPLIT,SEG_BACKBONE,SEEDS_PICKLE,SAL_DIR,ROOT_VAR,REPORT_SPLIT,SEEDS_LIST)
define paper_pipeline
$(1)_data = --dataset $(1) --data-root $$(call paper_need,$(8))
$(1)_cam = cam $$($(1)_data) --split $(3) --cam-split $(3) --backbone $$(PAPER_CAM_BACKBONE) --weights $$(PAPER_CAM_WEIGHTS) $$(PAPER_CAM_OPTS) --out $(2)
$(1)_saliency = saliency-bg $$($(1)_data) --split $(3) $(if $(7),--from-dir $(7),--method mbd) --out $(2)/saliency_$(3).h5
$(1)_seeds = seeds $$($(1)_data) --split $(3) $(if $(6),--from-dsrg $(6)$(if $(10), --dsrg-list $(10)),--cams $(2)/cams_$(3).h5 --saliency $(2)/saliency_$(3).h5) --out $(2)/seeds_$(3).h5
$(1)_labels = graphcut-label $$($(1)_data) --split $(9) --checkpoint $(2)/train/final.pt --seeds $(2)/seeds_$(3).h5 $$(PAPER_LABEL_OPTS) --out $(2)/labels_$(9).h5
$(1)_train = train $$($(1)_data) --split $(3) --seeds $(2)/seeds_$(3).h5 --backbone $(5) --weights $$(PAPER_SEG_WEIGHTS) $$(PAPER_TRAIN_OPTS) --out $(2)/train
$(1)_infer = infer $$($(1)_data) --split $(4) --checkpoint $(2)/train/final.pt $$(PAPER_TEST_OPTS) --out $(2)/pred_$(4)
$(1)_retrain = retrain $$($(1)_data) --split $(3) --checkpoint $(2)/train/final.pt --backbone $(5) --weights $$(PAPER_SEG_WEIGHTS) $$(PAPER_RETRAIN_OPTS) --out $(2)/retrain
$(1)_retrain_infer = infer $$($(1)_data) --split $(4) --checkpoint $(2)/retrain/final.pt $$(PAPER_TEST_OPTS) --out $(2)/retrain_pred_$(4)

.PHONY: $(1) $(1)-seeds $(1)-train $(1)-retrain clean-$(1)

$(1): install $(2)/report.txt
	@cat $(2)/report.txt

$(1)-seeds: install $(2)/seeds_$(3).h5

$(1)-train: install $(2)/eval_$(4).json

$(1)-retrain: install $(2)/eval_retrain_$(4).json

clean-$(1):
	rm -rf $(2)

$(2)/.opts/%: $(FORCE) | install
	@$$(call stamp,$$($(1)_$$*))

$(2)/cams_$(3).h5: $(2)/.opts/cam
	$$(DGCN) $$($(1)_cam) --device $$(DEVICE) --workers $$(PAPER_WORKERS) $$(call paper_redo,$(2)/classifier/last.pt $$@.partial)

$(2)/saliency_$(3).h5: $(2)/.opts/saliency $(7)
	$$(DGCN) $$($(1)_saliency) $$(call paper_redo,$$@.partial)

$(2)/seeds_$(3).h5: $(2)/.opts/seeds $(if $(6),$(6) $(10),$(2)/cams_$(3).h5 $(2)/saliency_$(3).h5)
	$$(DGCN) $$($(1)_seeds) $$(call paper_redo,$$@.partial)

$(2)/train/final.pt: $(2)/.opts/train $(2)/seeds_$(3).h5
	$$(DGCN) $$($(1)_train) --device $$(DEVICE) --workers $$(PAPER_WORKERS) $$(call paper_redo,$(2)/train/last.pt)

$(2)/pred_$(4)/pred.h5: $(2)/.opts/infer $(2)/train/final.pt
	$$(DGCN) $$($(1)_infer) --device $$(DEVICE) --workers $$(PAPER_WORKERS) --crf-workers $$(PAPER_WORKERS) $$(call paper_redo,$$@.partial)

$(2)/retrain/final.pt: $(2)/.opts/retrain $(2)/train/final.pt
	$$(DGCN) $$($(1)_retrain) --device $$(DEVICE) --workers $$(PAPER_WORKERS) $$(call paper_redo,$(2)/retrain/last.pt $(2)/retrain/pseudo_labels.h5 $(2)/retrain/pseudo_labels.h5.partial)

$(2)/retrain_pred_$(4)/pred.h5: $(2)/.opts/retrain_infer $(2)/retrain/final.pt
	$$(DGCN) $$($(1)_retrain_infer) --device $$(DEVICE) --workers $$(PAPER_WORKERS) --crf-workers $$(PAPER_WORKERS) $$(call paper_redo,$$@.partial)

$(2)/labels_$(9).h5: $(2)/.opts/labels $(2)/train/final.pt $(2)/seeds_$(3).h5
	$$(DGCN) $$($(1)_labels) --device $$(DEVICE) $$(call paper_redo,$$@.partial)

$(2)/eval_cams_$(9).json: $(2)/cams_$(3).h5
	$$(DGCN) evaluate $$< $$($(1)_data) --split $(9) --sweep --json $$@

$(2)/eval_seeds_$(9).json: $(2)/seeds_$(3).h5
	$$(DGCN) evaluate $$< $$($(1)_data) --split $(9) --json $$@

$(2)/eval_labels_$(9).json: $(2)/labels_$(9).h5
	$$(DGCN) evaluate $$< $$($(1)_data) --split $(9) --json $$@

$(2)/eval_pseudo_$(9).json: $(2)/retrain/final.pt
	$$(DGCN) evaluate $(2)/retrain/pseudo_labels.h5 $$($(1)_data) --split $(9) --json $$@

$(2)/eval_$(4).json: $(2)/pred_$(4)/pred.h5
	$$(DGCN) evaluate $$< $$($(1)_data) --split $(4) --json $$@

$(2)/eval_retrain_$(4).json: $(2)/retrain_pred_$(4)/pred.h5
	$$(DGCN) evaluate $$< $$($(1)_data) --split $(4) --json $$@

$(2)/report.txt: $(if $(6),,$(2)/eval_cams_$(9).json) $(2)/eval_seeds_$(9).json $(2)/eval_labels_$(9).json \
		$(2)/eval_pseudo_$(9).json $(2)/eval_$(4).json $(2)/eval_retrain_$(4).json
	$$(DGCN) report $$^ --out $$@
endef

$(eval $(call paper_pipeline,voc,$(VOC_OUT),$(VOC_TRAIN_SPLIT),$(VOC_VAL_SPLIT),$(VOC_SEG_BACKBONE),$(VOC_SEEDS),$(VOC_SAL_DIR),VOC_ROOT,$(VOC_REPORT_SPLIT),$(VOC_SEEDS_LIST)))
$(eval $(call paper_pipeline,coco,$(COCO_OUT),$(COCO_TRAIN_SPLIT),$(COCO_VAL_SPLIT),$(COCO_SEG_BACKBONE),$(COCO_SEEDS),$(COCO_SAL_DIR),COCO_ROOT,$(COCO_REPORT_SPLIT),$(COCO_SEEDS_LIST)))
