# Pipelines (included by the Makefile).
DEMO_OUT ?= runs/demo
DEMO_DATA := $(DEMO_OUT)/data/demo.json

demo: install $(DEMO_DATA)
	$(DGCN) evaluate $(DEMO_OUT)/data/SegmentationClass --dataset demo --data-root $(DEMO_OUT)/data --split val

$(DEMO_DATA): | install
	$(DGCN) demo-data --out $(DEMO_OUT)/data --overwrite

clean-demo:
	rm -rf $(DEMO_OUT)
