"""Every key of the stored data, spelled once: RLDS step and metadata keys, the tri-state `info` encoding,
the human-feedback, recording, annotation and encoding keys. Constants only; imports nothing."""

from __future__ import annotations



# --- RLDS step keys (the same strings as rlds.rlds_types; a test checks it) ---
OBSERVATION = "observation"
ACTION = "action"
REWARD = "reward"
DISCOUNT = "discount"
IS_FIRST = "is_first"
IS_LAST = "is_last"
IS_TERMINAL = "is_terminal"
STEPS = "steps"
EPISODE_METADATA = "episode_metadata"

# --- DROPJ step keys ---
ACTION_SCALED = "action_scaled"
INFO = "info"

# --- episode metadata keys ---
SOURCE_FILE = "source_file"
SOURCE_FILE_SCALED = "source_file_scaled"
EPISODE_INDEX = "episode_index"
FINAL_DONE = "final_done"
PICKLE_PROTOCOL = "pickle_protocol"
INITIAL_STATE = "initial_state"
INITIAL_STATE_FILE = "initial_state_file"
INITIAL_STATE_INDEX = "initial_state_index"

# --- info: tri-state encoding of "key absent / False / True" ---
INFO_ABSENT, INFO_FALSE, INFO_TRUE = -1, 0, 1

# Source info key -> feature name (a '.' does not belong in a feature path).
TIME_LIMIT_TRUNCATED = "TimeLimit.truncated"
INFO_FEATURE_NAMES = {
    "crash": "crash",
    "succ": "succ",
    "chuck": "chuck",
    "chuck_passed": "chuck_passed",
    "car": "car",
    "car_passed": "car_passed",
    TIME_LIMIT_TRUNCATED: "time_limit_truncated",
}
INFO_DOCS = {
    "crash": "off-road or out of the playfield on this step (reward -1)",
    "succ": "a new tile was visited on this step and the car was on the road (reward +10)",
    "chuck": "an agent wheel first touched a chuckhole not touched before in this episode",
    "chuck_passed": "the agent hull first came within 20 units of a chuckhole ('approached')",
    "car": "the agent hull first collided with an NPC car",
    "car_passed": "the agent hull first came within 20 units of an NPC car",
    TIME_LIMIT_TRUNCATED: "set by gym's TimeLimit at step 1000: True unless the car also left the playfield",
}


# --- human feedback (DATA_FORMATS.md 4-5) ---------------------------------------------------------------
QUERY_ID = "query_id"
QUERY_INDEX = "query_index"
RESPONSE_INDEX = "response_index"
LEFT = "left"
RIGHT = "right"
RESPONSE = "response"
SKIPPED = "skipped"
ANSWERS = "answers"
QUESTION = "question"
ANSWER = "answer"
SECONDS = "seconds"
REPEAT_COUNT = "repeat_count"
TOTAL_TIME = "total_time"
ANNOTATOR = "annotator"
USER_ID = "user_id"
METHOD = "method"
PREFERENCE = "preference"
JUSTIFICATION = "justification"
LABEL = "label"
HAS_LABEL = "has_label"

# Keys of one response entry in the release files, and the strings the GUIs wrote.
RESPONSE_KEYS = ("video", "responses", "repeat_count", "total_time")
SKIPPED_ANSWER = "Skipped"
Q_PREFER = "Which clip do you prefer?"
Q_LEFT_SAFE = "Does the left car stay safe?"
Q_RIGHT_SAFE = "Does the right car stay safe?"
Q_JUSTIFICATION = "Please give Justification"
Q_PREFERENCE = "Please give Preference"
A_LEFT, A_RIGHT, A_EQUALLY, A_YES, A_NO = "Left", "Right", "Equally", "Yes", "No"


SEGMENT_STEPS = 20
VIDEO = "video"
SKETCH_INDEX = "sketch_index"
FEEDBACK_SESSION = "feedback_session"
NEXT_OBSERVATION = "next_observation"


# --- new recordings (`dropj record`; DATA_FORMATS.md 1 and 8) --------------------------------------------
RECORDING_DATASET = "dropj_recording"
WALL_TIME = "wall_time"
KEYS_HELD = "keys_held"
KEYS = ("left", "right", "up", "down")  # the order of `keys_held`
USER_ID_TEXT = "user_id"
SESSION_ID = "session_id"
ENV_ID = "env_id"
ENV_MODE = "env_mode"
SEED = "seed"
DROPJ_VERSION = "dropj_version"
GYMNASIUM_VERSION = "gymnasium_version"
START_TIME = "start_time"
TIME_LIMIT = "time_limit"
RECORDED_PICKLE_PROTOCOL = 5  # what the authors' recorder wrote (pickle.HIGHEST_PROTOCOL under Python 3.8)
DREAM_PICKLE_PROTOCOL = 4  # the release's dream rollouts (`user_extract_dream.py`)
RESPONSES_PICKLE_PROTOCOL = 4  # what the authors' GUIs wrote (pickle.DEFAULT_PROTOCOL under Python 3.8)


# --- new human feedback (`dropj annotate`; DATA_FORMATS.md 5) ------------------------------------------
ANNOTATION_DATASET = "dropj_annotations"
ANNOTATION = "annotation"
USER_AGENT = "user_agent"
ANSWERED_AT = "answered_at"


# --- real episodes encoded to latent states (`dropj encode`; DATA_FORMATS.md 0.2) ------------------------
ENCODED_DATASET = "dropj_encoded"
SOURCE_DATASET = "source_dataset"
VAE_SHA256 = "vae_sha256"
MDNRNN_SHA256 = "mdnrnn_sha256"
