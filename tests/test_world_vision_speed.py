"""The faster Qwen2.5-VL vision tower computes what the stock one does, and its gradients."""

import torch
from PIL import Image

from specflash.world.build import new_model
from specflash.world.packing import use_packed_attention
from specflash.world.processing import load_processor, video_pixels
from specflash.world.vision_speed import use_fast_vision


def _tower_outputs(model, processor) -> list[torch.Tensor]:
    """Features of two images of each of two sizes (two runs of chunks of equal length) and of a video
    (four frame pairs), and the gradients."""
    torch.manual_seed(0)
    images = [Image.fromarray(torch.randint(0, 256, (size, size, 3), dtype=torch.uint8).numpy()) for size in (128, 96)]
    stills = processor.image_processor(images=[images[0]] * 2 + [images[1]] * 2, return_tensors="pt")
    frames, grid = video_pixels(processor.image_processor, images[1:] * 4)
    model.zero_grad()
    features = [
        model.model.get_image_features(stills["pixel_values"], stills["image_grid_thw"]).pooler_output,
        model.model.get_video_features(frames, torch.tensor([grid])).pooler_output,
    ]
    features = [torch.cat(list(f)) if isinstance(f, (list, tuple)) else f for f in features]
    sum(f.square().sum() for f in features).backward()
    return [*features, *(p.grad for p in model.model.visual.parameters())]


def test_the_fast_vision_tower_computes_what_the_stock_one_does(tmp_path):
    torch.set_num_threads(1)
    stock = new_model("world-qwen-tiny", "tiny", tmp_path, 0)
    fast = new_model("world-qwen-tiny", "tiny", tmp_path, 0)
    use_fast_vision(fast)
    use_packed_attention(fast)  # the language model's attention does not undo the tower's
    assert fast.model.visual.config._attn_implementation != stock.model.visual.config._attn_implementation
    processor = load_processor(tmp_path)
    expected, got = _tower_outputs(stock, processor), _tower_outputs(fast, processor)
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        a, b = a.detach(), b.detach()
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()))
    assert stock.state_dict().keys() == fast.state_dict().keys()  # the saved model is the stock one


def test_other_families_are_left_as_they_are(tmp_path):
    llava = new_model("world-llava-tiny", "tiny", tmp_path, 0)
    before = llava.config.vision_config._attn_implementation
    use_fast_vision(llava)
    assert llava.config.vision_config._attn_implementation == before
