# The whole method on real photos in VOC layout, one parameterised pipeline (included by the
# Makefile): `make horse` (horse-voc, 2 classes) and `make msrc` (msrc-voc, 12 VOC classes) are
# the same chain with their own data, network size and schedule. Every step is a file target,
# as in `make demo`: a rerun only redoes what changed, an interrupted step resumes.
#
#   <OUT>/cam/cams_{train,val}.h5, <OUT>/saliency_train.h5, <OUT>/seeds_train.h5   (shared)
#   <OUT>/runs/<expander>-s<seed>/{train/,labels_train.h5,pred/}                   (one per run)
#   <OUT>/runs/retrain-<expander>-s<seed>/{final.pt,pseudo_labels.h5,pred/}        (its teacher's)
#   <OUT>/runs.list (the run ids: adding a seed or an expander remakes the report and its runs)
#   <OUT>/.opts/<step> (each step's options: changing them redoes the step and what follows)
#   <OUT>/eval/*.json, runs/*/eval/*.json -> <OUT>/report.txt (mean ± std over the seeds, and
#   per-class IoU), <OUT>/show_val.png, <OUT>/curves.png (the first seed's runs)
#
# Protocol of the figures: CAMs at the cam step's scales + flip, each split's best background
# threshold; seeds and proxy labels on train (precision = labelled pixels that are right,
# coverage = pixels labelled), at the image's size; final models on the whole val split at
# scales 0.75/1/1.25 + flip, dense CRF on.
#
# Per dataset NAME (HORSE, MSRC) the pipeline reads: NAME_ROOT, NAME_OUT, NAME_SEEDS (training
# seeds), NAME_EXPANDERS, NAME_RETRAIN_FROM (teachers' expanders), NAME_CAM_NET, NAME_TRAIN_NET,
# NAME_RETRAIN_NET, NAME_SEED_OPTS (seeds fusion), NAME_SHOW_IDS.

# Retraining as DSRG's second step (which the paper follows): from the teacher's weights (the
# retrain default), poly learning rate 1e-3 (power 0.9), no warm-up. DSRG trains 20,000
# iterations at batch 10 (18.9 epochs of VOC's 10,582 images), 2.7 times the epochs of DGCN's
# stage one (7): the photo pipelines scale their retraining the same way, 2.7 times their own
# training epochs (rounded), where time allows (msrc.mk: 6, not 16).
PHOTO_RETRAIN_REGIME ?= --lr 0.001 --lr-schedule poly --warmup 0
# saliency maps in worker processes (the maps do not depend on it; horse train, 496 photos,
# 2 cores: 66-67 s in the main process, 38 s with 2 workers)
PHOTO_SALIENCY_WORKERS ?= 2
HORSE_RETRAIN_EPOCHS ?= 8

# a run's name is <expander>-s<seed>: its stem in the pattern rules below
photo_expander = $(firstword $(subst -s, ,$(1)))
photo_seed = $(lastword $(subst -s, ,$(1)))

# $(call photo_pipeline,PREFIX,GOAL)
define photo_pipeline
$(1)_DS = --dataset voc --data-root $$($(1)_ROOT)
$(1)_DEV = $$($(1)_DS) --device $$(DEVICE)
$(1)_R = $$($(1)_OUT)/runs
$(1)_RUN_IDS = $$(foreach s,$$($(1)_SEEDS),$$(foreach e,$$($(1)_EXPANDERS),$$(e)-s$$(s)))
$(1)_RETRAIN_IDS = $$(foreach s,$$($(1)_SEEDS),$$(foreach e,$$($(1)_RETRAIN_FROM),retrain-$$(e)-s$$(s)))
# what each stamped step's outputs depend on besides their input files (DEVICE and workers
# change no result and are left out)
$(1)_OPTS_cam = $$($(1)_DS) $$($(1)_CAM_NET)
$(1)_OPTS_saliency = $$($(1)_DS)
$(1)_OPTS_seeds = $$($(1)_SEED_OPTS)
$(1)_OPTS_train = $$($(1)_TRAIN_NET)
$(1)_OPTS_retrain = $$($(1)_RETRAIN_NET)
$(1)_O = $$($(1)_OUT)/.opts
$(1)_STAMPED = cam saliency seeds train retrain
$$(call adopt_stamps,$$($(1)_OUT),$$($(1)_STAMPED),$(1)_OPTS_)
$(1)_FIRST_RUNS = $$(foreach e,$$($(1)_EXPANDERS),$$($(1)_R)/$$(e)-s$$(firstword $$($(1)_SEEDS))/train) \
	$$(foreach e,$$($(1)_RETRAIN_FROM),$$($(1)_R)/retrain-$$(e)-s$$(firstword $$($(1)_SEEDS)))

.PHONY: $(2) clean-$(2)

$(2): install $$($(1)_OUT)/report.txt $$($(1)_OUT)/show_val.png $$($(1)_OUT)/curves.png
	@cat $$($(1)_OUT)/report.txt

# each step's options (`stamp` in the Makefile): changing one redoes that step and what follows
# (+: written under `make -n` too, only where the options changed, so its plan is the real one)
$$($(1)_O)/%: $$(FORCE)
	+@$$(call stamp,$$($(1)_OPTS_$$*))

$$($(1)_OUT)/cam/cams_train.h5 $$($(1)_OUT)/cam/cams_val.h5 &: $$($(1)_O)/cam | install
	$$(DGCN) cam $$($(1)_DEV) $$($(1)_CAM_NET) --seed 0 --cam-split train --cam-split val --out $$($(1)_OUT)/cam $$(call redo,$$($(1)_OUT)/cam/classifier/last.pt $$($(1)_OUT)/cam/cams_train.h5.partial $$($(1)_OUT)/cam/cams_val.h5.partial)

$$($(1)_OUT)/saliency_train.h5: $$($(1)_O)/saliency | install
	$$(DGCN) saliency-bg $$($(1)_DS) --split train --workers $$(PHOTO_SALIENCY_WORKERS) --out $$@ $$(call redo,$$@.partial)

$$($(1)_OUT)/seeds_train.h5: $$($(1)_OUT)/cam/cams_train.h5 $$($(1)_OUT)/saliency_train.h5 $$($(1)_O)/seeds
	$$(DGCN) seeds $$($(1)_DS) --split train --cams $$< --saliency $$($(1)_OUT)/saliency_train.h5 $$($(1)_SEED_OPTS) --out $$@ $$(call redo,$$@.partial)

$$($(1)_R)/%/train/final.pt: $$($(1)_OUT)/seeds_train.h5 $$($(1)_O)/train
	$$(DGCN) train $$($(1)_DEV) $$($(1)_TRAIN_NET) --seed $$(call photo_seed,$$*) --expander $$(call photo_expander,$$*) --seeds $$< --out $$(@D) $$(call redo,$$(@D)/last.pt)

$$($(1)_R)/%/labels_train.h5: $$($(1)_R)/%/train/final.pt $$($(1)_OUT)/seeds_train.h5
	$$(DGCN) graphcut-label $$($(1)_DEV) --split train --expander $$(call photo_expander,$$*) --checkpoint $$< --seeds $$($(1)_OUT)/seeds_train.h5 --out $$@ $$(call redo,$$@.partial)

$$($(1)_R)/%/pred/pred.h5: $$($(1)_R)/%/train/final.pt
	$$(DGCN) infer $$($(1)_DEV) --split val --checkpoint $$< --out $$(@D) $$(call redo,$$@.partial)

$$($(1)_R)/retrain-%/final.pt: $$($(1)_R)/%/train/final.pt $$($(1)_O)/retrain
	$$(DGCN) retrain $$($(1)_DEV) $$($(1)_RETRAIN_NET) --seed $$(call photo_seed,$$*) --checkpoint $$< --out $$(@D) $$(call redo,$$(@D)/last.pt $$(@D)/pseudo_labels.h5.partial)

# (a shorter stem than the rule above: make picks this one for retrain-<run>/pred)
$$($(1)_R)/retrain-%/pred/pred.h5: $$($(1)_R)/retrain-%/final.pt
	$$(DGCN) infer $$($(1)_DEV) --split val --checkpoint $$< --out $$(@D) $$(call redo,$$@.partial)

# one evaluation per artifact, named by what it scores
$$($(1)_OUT)/eval/cams_%.json: $$($(1)_OUT)/cam/cams_%.h5
	$$(DGCN) evaluate $$< $$($(1)_DS) --split $$* --sweep --json $$@ > /dev/null
$$($(1)_OUT)/eval/seeds_train.json: $$($(1)_OUT)/seeds_train.h5
	$$(DGCN) evaluate $$< $$($(1)_DS) --split train --json $$@ > /dev/null
$$($(1)_R)/%/eval/labels_train.json: $$($(1)_R)/%/labels_train.h5
	$$(DGCN) evaluate $$< $$($(1)_DS) --split train --json $$@ > /dev/null
$$($(1)_R)/%/eval/pseudo_train.json: $$($(1)_R)/%/final.pt
	$$(DGCN) evaluate $$($(1)_R)/$$*/pseudo_labels.h5 $$($(1)_DS) --split train --json $$@ > /dev/null
$$($(1)_R)/%/eval/pred_val.json: $$($(1)_R)/%/pred/pred.h5
	$$(DGCN) evaluate $$< $$($(1)_DS) --split val --json $$@ > /dev/null

$(1)_EVALS = $$(addprefix $$($(1)_OUT)/eval/,cams_val.json cams_train.json seeds_train.json) \
	$$(foreach r,$$($(1)_RUN_IDS),$$($(1)_R)/$$(r)/eval/labels_train.json $$($(1)_R)/$$(r)/eval/pred_val.json) \
	$$(foreach r,$$($(1)_RETRAIN_IDS),$$($(1)_R)/$$(r)/eval/pseudo_train.json $$($(1)_R)/$$(r)/eval/pred_val.json)

# The runs the report covers, rewritten only when they change. Every target is secondary
# (.SECONDARY in pipelines.mk), and make does not build a missing secondary file for a target
# whose files are all newer than their inputs: without this list, adding a seed or an expander
# to an existing pipeline printed the old report and trained nothing.
$$($(1)_OUT)/runs.list: $$(FORCE)
	+@$$(call stamp,$$($(1)_RUN_IDS) $$($(1)_RETRAIN_IDS))

$$($(1)_OUT)/report.txt: $$($(1)_EVALS) $$($(1)_OUT)/runs.list
	$$(DGCN) report --by-seed --per-class $$(filter %.json,$$^) --out $$@ > /dev/null

$$($(1)_OUT)/show_val.png: $$($(1)_OUT)/cam/cams_val.h5 $$($(1)_R)/graphcut-s$$(firstword $$($(1)_SEEDS))/pred/pred.h5
	$$(DGCN) show $$($(1)_DS) --split val --cams $$< --pred $$(word 2,$$^) --ids $$($(1)_SHOW_IDS) --out $$@

$$($(1)_OUT)/curves.png: $$(addsuffix /final.pt,$$($(1)_FIRST_RUNS))
	$$(DGCN) curves $$($(1)_FIRST_RUNS) --out $$@

clean-$(2):
	rm -rf $$($(1)_OUT)
endef
