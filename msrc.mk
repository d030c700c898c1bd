# make msrc: the same pipeline as make horse (photos.mk) on ../shared/data/msrc-voc: 303 real
# photos (243 train / 60 val), 12 VOC object classes, often several instances per photo: the
# many-class set, where each image's seeds compete with other classes as on VOC. Classes are
# unbalanced (person 50 photos, horse 2): the report has per-class IoU beside the mean.
MSRC_ROOT ?= ../shared/data/msrc-voc
MSRC_OUT ?= runs/msrc
MSRC_SEEDS ?= 0 1 2
MSRC_EXPANDERS ?= none dsrg graphcut labelprop
# Retrained from the graph cut only, for 6 epochs (not photos.mk's 2.7x, 16): on this 2-core
# CPU one seed must finish in 90 minutes. Measured (one seed, seconds per iteration drifting
# 3.3-4.7): cam 20 min, each training 10.5-14 min, each retraining at 6 epochs 13.6 min
# (labelling 2.5), at 16 about 30; with four expanders and two 16-epoch retrainings about 2 h 10.
MSRC_RETRAIN_FROM ?= graphcut
MSRC_RETRAIN_EPOCHS ?= 6
# the horse network and crop (photos are about 320x213: the crop pads them)
MSRC_NET := --backbone efficientnet_lite0 --weights imagenet --crop 225 --batch-size 8
MSRC_CAM_NET ?= $(MSRC_NET) --freeze-backbone --epochs 10 --lr 0.01 --warmup 5% --scales 1,1.5
# Epochs scaled to the data: 243 photos make 30 iterations an epoch at batch 8, so 6 epochs
# train for about as many iterations (180) as horse's 3 epochs of 62.
MSRC_TRAIN_NET ?= $(MSRC_NET) --epochs 6 --lr 0.001 --warmup 5% --val-split val
MSRC_RETRAIN_NET ?= $(PHOTO_RETRAIN_REGIME) $(MSRC_NET) --epochs $(MSRC_RETRAIN_EPOCHS) --val-split val
MSRC_SEED_OPTS ?=
MSRC_SHOW_IDS ?= $(shell head -4 $(MSRC_ROOT)/ImageSets/Segmentation/val.txt 2>/dev/null | paste -sd, -)

$(eval $(call photo_pipeline,MSRC,msrc))
