"""Train AHAC's own SHAC on AHAC's own DFlex task: the reference that our SHAC on our Ant is compared with.

Nothing of AHAC's is part of this repository. Point PYTHONPATH at the `dflex` and `src` folders of a checkout of
github imgeorgiev/DiffRL (docs/tasks.md#ant says what DFlex needs) and give the checkout with --diffrl:

    PYTHONPATH=$DIFFRL/dflex:$DIFFRL/src python benchmark/ahac_shac.py --diffrl $DIFFRL --env-id Ant --seed 1 \
        --total-timesteps 1000000 --logdir runs/ahac_shac_Ant_1

It composes AHAC's configuration as its `scripts/train.py alg=shac env=ant` would (config.yaml, alg/shac.yaml,
env/ant.yaml), on the CPU, and trains; AHAC's SHAC writes TensorBoard logs under LOGDIR/log, with its
100-episode mean training return under the tag `rewards` against env steps (benchmark/ahac_compare.py plots it).
"""
import argparse
import os
import random

import numpy as np
import torch

ENV_CONFIGS = {"Ant": "ant", "Hopper": "hopper", "Humanoid": "humanoid", "Anymal": "anymal"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffrl", required=True, help="a checkout of github imgeorgiev/DiffRL")
    parser.add_argument("--env-id", choices=sorted(ENV_CONFIGS), default="Ant")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--total-timesteps", type=int, default=1_000_000)
    parser.add_argument("--logdir", required=True)
    args = parser.parse_args()

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import shac.utils.hydra_utils  # noqa: F401  (registers the resolvers AHAC's configs use)

    cfg_dir = os.path.join(args.diffrl, "scripts", "cfg")
    cfg = OmegaConf.load(os.path.join(cfg_dir, "config.yaml"))
    cfg.pop("defaults")
    cfg.env = OmegaConf.merge(cfg.env, OmegaConf.load(os.path.join(cfg_dir, "env", f"{ENV_CONFIGS[args.env_id]}.yaml")))
    cfg.alg = OmegaConf.load(os.path.join(cfg_dir, "alg", "shac.yaml"))
    cfg.general.device = "cpu"
    cfg.general.seed = args.seed
    cfg.env.config.no_grad = False  # SHAC differentiates through the simulator
    steps_per_epoch = cfg.env.config.num_envs * cfg.alg.steps_num
    cfg.alg.max_epochs = -(-args.total_timesteps // steps_per_epoch)
    OmegaConf.resolve(cfg)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    algo = instantiate(cfg.alg, env_config=cfg.env.config, logdir=args.logdir)
    algo.train()


if __name__ == "__main__":
    main()
