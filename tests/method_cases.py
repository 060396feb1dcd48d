"""One line per method: overrides that make its `configs/<name>_demo.yaml` tiny enough for the test suite
(2 cores). tests/test_methods_demo.py trains every method listed here from its demo YAML, resumes it exactly and
evaluates its exported encoder; tests/test_ddp_methods.py checks its gradients under two gloo processes.
Adding a method = adding its line here."""

TINY: dict[str, list[str]] = {
    "byol": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32"],
    "rho_byol": ["trainer.batch_size=2", "data.img_size=40", "method.crop_size=32"],
    "densecl": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32", "method.queue_size=64", "method.hidden=32", "method.dim=16"],
    "scrl": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32", "method.min_box_size=8", "method.proj_hidden=32", "method.proj_dim=16", "method.pred_hidden=32"],
    "simclr": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32", "method.proj_hidden=32", "method.proj_dim=16"],
    "mocov2": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32", "method.queue_size=64", "method.hidden=32", "method.dim=16"],
    "mocov3": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32", "method.hidden=32", "method.dim=16"],
    "simsiam": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32", "method.proj_hidden=32", "method.dim=32", "method.pred_dim=16"],
    "barlow_twins": ["trainer.batch_size=8", "data.img_size=48", "method.crop_size=32", "method.projector=32-32", "method.scale=0.03125"],
    "vicreg": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32", "method.expander=32-32"],
    "wmse": ["trainer.batch_size=8", "data.img_size=48", "method.crop_size=32", "method.proj_hidden=32", "method.proj_dim=2", "method.w_size=4"],
    "stor": ["trainer.batch_size=2", "data.clip_len=4", "data.img_size=40", "method.crop_size=32", "method.proj_hidden=32", "method.proj_dim=16", "method.pred_hidden=32"],
    "timecycle": ["trainer.batch_size=2", "data.img_size=72", "method.crop_size=64", "method.patch_size=56", "method.embed_dim=32"],
    "swav": ["trainer.batch_size=4", "data.img_size=48", "method.global_size=32", "method.local_size=16", "method.local_crops=2", "method.hidden=32", "method.feat_dim=16", "method.prototypes=10", "method.queue_length=8", "method.queue_start_step=0", "method.freeze_prototypes_steps=2"],
    "dino": ["trainer.batch_size=4", "data.img_size=48", "method.global_size=32", "method.local_size=16", "method.local_crops=2", "method.out_dim=64", "method.hidden_dim=32", "method.bottleneck_dim=16", "method.warmup_teacher_temp_steps=3", "method.freeze_last_layer_steps=2"],
    "sts": ["trainer.batch_size=2", "data.img_size=32", "data.clip_len=4"],
    "cmd": ["trainer.batch_size=2", "data.img_size=40", "data.clip_len=4", "method.clip_len=4", "method.crop_size=32", "method.future_frames=2", "method.neg_num=1", "method.hidden_dim=32", "method.num_heads=2", "method.num_encoder_layers=1", "method.num_decoder_layers=1", "method.head_hidden=32", "method.head_dim=16", "method.dropout=0.0"],
    "rho_moco": ["trainer.batch_size=2", "data.img_size=40", "method.crop_size=32", "method.queue_size=16", "method.hidden=32", "method.dim=16"],
    "mae": ["trainer.batch_size=2", "data.img_size=40", "method.crop_size=32", "method.decoder_dim=32", "method.decoder_depth=1", "method.decoder_heads=2"],
    "siammae": ["trainer.batch_size=2", "data.img_size=40", "method.crop_size=32", "method.min_gap=1", "method.max_gap=3", "method.decoder_dim=32", "method.decoder_depth=1", "method.decoder_heads=2", "method.decoder_ff_dim=64", "method.decoder_dropout=0.0"],
    "cropmae": ["trainer.batch_size=2", "data.img_size=40", "method.crop_size=32", "method.decoder_dim=32", "method.decoder_depth=1", "method.decoder_heads=2", "method.decoder_ff_dim=64", "method.decoder_dropout=0.0"],
    "videomae": ["trainer.batch_size=2", "data.img_size=32", "method.crop_size=32", "data.clip_len=4", "method.clip_len=4", "method.backbone_kwargs={embed_dim: 48, depth: 1, num_heads: 2}", "method.decoder_dim=24", "method.decoder_depth=1", "method.decoder_heads=2"],
}
