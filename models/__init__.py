"""PyTorch models of the DROPJ release (DATA_FORMATS.md 7), installed as ``dropj.models``.

    from dropj.models import ConvVAE, MDNRNN, PreferenceRewardEnsemble, load_preference_members
    from dropj_datasets import schema

    vae = ConvVAE.for_env(schema.CARRACING)          # 3,337,747 parameters, 84x84 frames
    rnn = MDNRNN.for_env(schema.CARRACING)           # 423,392 parameters, K = 5
    reward = load_preference_members('models/carracing/pref_reward_models', 'GUI_s20_just_resp500')

Module and layer names match the authors' code, so their checkpoints load strictly (`checkpoints`).
LSTM states are ``(c, h)`` throughout, as in the release's ``z|c|h`` vectors (see `mdnrnn`).

This package needs torch and numpy only: it never imports TensorFlow or tensorflow_datasets
(``for_env`` takes a `dropj_datasets.schema.EnvSpec` or its name; the schema imports no TensorFlow).
"""

from .checkpoints import (CheckpointError, load_checkpoint, load_preference_members, preference_member_path,
                          read_checkpoint, read_state_dict, save_checkpoint, save_preference_members)
from .mdnrnn import MDNOutput, MDNRNN, MDNRNNConfig, latent_state, mdn_nll, split_latent_state
from .encode import encode_episode
from .evaluate import PreferenceEvaluation, evaluate_preferences
from .reward import (REWARD_CLASSES, PreferenceRewardConfig, PreferenceRewardEnsemble, SparseRewardConfig,
                     SparseRewardEnsemble, preference_loss, reward_class_index)
from .vae import ConvVAE, VAEConfig, frames_to_tensor, vae_loss

__all__ = [
    # VAE
    "VAEConfig", "ConvVAE", "frames_to_tensor", "vae_loss",
    # MDN-RNN
    "MDNRNNConfig", "MDNRNN", "MDNOutput", "mdn_nll", "latent_state", "split_latent_state",
    # reward models
    "PreferenceRewardConfig", "PreferenceRewardEnsemble", "preference_loss",
    "SparseRewardConfig", "SparseRewardEnsemble", "REWARD_CLASSES", "reward_class_index",
    # evaluation, encoding
    "evaluate_preferences", "PreferenceEvaluation", "encode_episode",
    # checkpoints
    "CheckpointError", "load_preference_members", "save_preference_members", "preference_member_path",
    "load_checkpoint", "save_checkpoint", "read_checkpoint", "read_state_dict",
]
