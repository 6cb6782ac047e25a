"""The photo-patch feature net (eval/photo_features.py): learns its proxy task, saves/loads, feeds FID."""

import torch

from gaussiantoken.data.photos import load_photo_patches
from gaussiantoken.eval.fid import fid_from_features, make_fid
from gaussiantoken.eval.feature_nets import image_to_tensor
from gaussiantoken.eval.photo_features import PhotoFeatureNet, patch_accuracy, patch_classes, train_photo_feature_net

torch.set_num_threads(1)


def test_learns_the_patch_origin_and_round_trips(tmp_path):
    ds = load_photo_patches(split="train", num_samples=540, scales=[1.0, 0.25], seed=0)
    names, labels = patch_classes(ds)
    assert len(names) == len(set(ds["photo"])) * 2 and labels.max() == len(names) - 1
    model, losses = train_photo_feature_net(ds, epochs=4, channels=(8, 16, 16), feature_dim=16)
    assert losses[-1] < losses[0]
    assert patch_accuracy(model, ds) > 3.0 / len(names)  # well above chance on what it saw
    model.save_pretrained(tmp_path)
    again = PhotoFeatureNet.from_pretrained(tmp_path)
    x = torch.stack([image_to_tensor(im) for im in ds["image"][:8]])
    assert torch.equal(again.extract_features(x), model.extract_features(x))
    fid = make_fid(feature_net=model)
    fid.update(x, real=True)
    fid.update(x, real=False)
    assert abs(float(fid.compute())) < 1e-2  # identical sets
    feats = model.extract_features(x).detach()
    assert fid_from_features(feats, feats + 1.0) > 0.9 * feats.shape[1]  # mean shift of 1 per feature
