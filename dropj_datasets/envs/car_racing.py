"""`DropjCarRacing`: Car Racing as the DROPJ participants drove it (DATA_FORMATS.md 8.1), on gymnasium.

Built on gymnasium's `CarRacing` (the same track generator and Box2D car),
with the authors' changes to gym 0.20's `CarRacing-v0`:

* **Reward** is a Python int: -1 with `info['crash']` when the car is off
  the road or out of the playfield, else +10 with `info['succ']` when a new
  tile was visited this step, else 0. gym's internal score (-0.1 a frame,
  +1000/N a tile) is still kept in `self.reward`, for display only.
* **Off road** follows the authors' contact rule: it becomes True when one
  wheel leaves its last tile and False when any wheel touches a tile.
* **Termination** only when the car leaves the playfield (|x| or |y| >
  333.3). Finishing a lap does not end the episode. The 1000-step limit is
  gymnasium's `TimeLimit` (registered with the id), reported as `truncated`.
* **Observations** are the stored frames: the 96x96 state image (gym 0.20
  camera, aliased; `render.py`) processed to 84x84 as in the release. The
  unprocessed image is `self.state`.
* **Seeding** follows gym 0.20 (`seeding.py`): `reset(seed=s)` builds the
  track the authors' environment built for `env.seed(s)`, from a legacy
  `RandomState` kept in `self.track_random` (gymnasium's own `np_random`
  Generator is seeded too, as gymnasium expects). `reset()` without a seed
  continues the previous stream, as gym 0.20 did; `info['seed']` names the
  seed the stream started from.

The gymnasium 5-tuple API is used; `dropj.converters.recording.capture` turns it back
into the release's (prev_obs, action, reward, obs, done, info) tuples.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

import gymnasium as gym
from Box2D.b2 import contactListener
from gymnasium import spaces
from gymnasium.envs.box2d import car_racing as gym_car_racing
from gymnasium.envs.box2d.car_dynamics import Car

from dropj_datasets import schema
from dropj_datasets.envs import render
from dropj_datasets.envs.frames import process_frame
from dropj_datasets.envs.seeding import legacy_random_state

FPS = 50
MAX_EPISODE_STEPS = 1000
PLAYFIELD = render.PLAYFIELD
CRASH_REWARD, SUCC_REWARD, NO_REWARD = -1, 10, 0
CRASH, SUCC = "crash", "succ"
AGENT_HULL_RGB = (0.8, 0.0, 0.0)
VIDEO_W, VIDEO_H = 600, 400


class TileContacts(contactListener):
    """Tile visits and the off-road flag, from Box2D contacts (the authors' `FrictionDetector`).

    Only the agent's wheels count (`env.is_agent_wheel`): NPC cars of the
    obstacle env touch tiles too, but neither visit them nor move the flag.
    """

    def __init__(self, env: "DropjCarRacing"):
        contactListener.__init__(self)
        self.env = env

    def BeginContact(self, contact):  # noqa: N802 (Box2D's name)
        self._contact(contact, True)

    def EndContact(self, contact):  # noqa: N802
        self._contact(contact, False)

    def _contact(self, contact, begin: bool) -> None:
        tile, other = None, None
        a, b = contact.fixtureA.body.userData, contact.fixtureB.body.userData
        if a is not None and "road_friction" in a.__dict__:
            tile, other = a, b
        if b is not None and "road_friction" in b.__dict__:
            tile, other = b, a
        if tile is None:
            self.env.on_other_contact(contact, begin)
            return
        self.env.tile_touched(tile, other)
        if other is None or "tiles" not in other.__dict__ or not self.env.is_agent_wheel(other):
            if other is not None and "tiles" in other.__dict__:
                (other.tiles.add if begin else other.tiles.discard)(tile)
            return
        if begin:
            self.env.off_road = False
            other.tiles.add(tile)
            if not tile.road_visited:
                tile.road_visited = True
                self.env.reward += 1000.0 / len(self.env.track)
                self.env.tile_visited_count += 1
        else:
            other.tiles.discard(tile)
            if not other.tiles:
                self.env.off_road = True


class DropjCarRacing(gym_car_racing.CarRacing):
    """Car Racing with the DROPJ reward, flags, termination and 84x84 frames. See the module docstring."""

    metadata = {"render_modes": ["human", "rgb_array", "state_pixels"], "render_fps": FPS}
    env_spec = schema.CARRACING
    state_size = (gym_car_racing.STATE_W, gym_car_racing.STATE_H)  # (width, height) of the raw state image
    indicator_bar = True

    def __init__(self, render_mode: Optional[str] = None):
        super().__init__(render_mode=render_mode, continuous=True)
        self.observation_space = spaces.Box(0, 255, shape=self.env_spec.frame_shape, dtype=np.uint8)
        self.off_road = False
        self.prev_tile_visited_count = 0
        self.state: Optional[np.ndarray] = None
        self.track_random: Optional[np.random.RandomState] = None  # gym 0.20's, for the track
        self.track_seed: Optional[int] = None
        self._polys = np.zeros((0, 4, 2))
        self._poly_colors: list[tuple[int, int, int]] = []
        self._grass = render.grass_patches()
        self._window = None

    # --- episode life cycle ---------------------------------------------------------------------

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None) -> tuple[np.ndarray, dict]:
        gym.Env.reset(self, seed=seed)  # gymnasium's own Generator (`np_random`), for gymnasium's checks
        if seed is not None or self.track_random is None:
            self.track_random, self.track_seed = legacy_random_state(seed)
            self.on_seed(self.track_seed)
        self._destroy()
        self.world.contactListener_bug_workaround = TileContacts(self)
        self.world.contactListener = self.world.contactListener_bug_workaround
        self.reward = 0.0
        self.prev_reward = 0.0
        self.tile_visited_count = 0
        self.prev_tile_visited_count = 0
        self.t = 0.0
        self.new_lap = False
        self.road_poly = []
        while not self._create_track_from(self.track_random):
            pass
        self._index_road()
        self.car = Car(self.world, *self.track[0][1:4])
        self.off_road = False
        self.on_reset()
        observation = self.step(None)[0]
        return observation, {"seed": self.track_seed}

    def step(self, action: Any) -> tuple[np.ndarray, int, bool, bool, dict]:
        assert self.car is not None, "call reset() first"
        if action is not None:
            action = np.asarray(action, dtype=np.float64)
            if action.shape != (3,) or not np.all(np.isfinite(action)):
                raise ValueError(f"action must be 3 finite floats [steer, gas, brake], got {action!r}")
            action = self.applied_action(action)
            self.car.steer(-action[0])
            self.car.gas(action[1])
            self.car.brake(action[2])
        self.before_physics()
        self.car.step(1.0 / FPS)
        self.world.Step(1.0 / FPS, 6 * 30, 2 * 30)
        self.t += 1.0 / FPS
        self.after_physics()

        self.state = self._render("state_pixels")
        reward, terminated, info = NO_REWARD, False, {}
        if action is not None:  # reset() steps once without an action
            self.reward -= 0.1
            self.car.fuel_spent = 0.0
            self.prev_reward = self.reward
            x, y = self.car.hull.position
            out_of_bounds = abs(x) > PLAYFIELD or abs(y) > PLAYFIELD
            terminated = out_of_bounds  # lap completion never terminates
            if out_of_bounds or self.off_road:
                reward = CRASH_REWARD
                info[CRASH] = True
            elif self.tile_visited_count > self.prev_tile_visited_count:
                reward = SUCC_REWARD
                info[SUCC] = True
            info.update(self.step_flags())
        self.prev_tile_visited_count = self.tile_visited_count
        if self.render_mode == "human":
            self.render()
        return process_frame(self.state), reward, terminated, False, info

    def _create_track_from(self, random_state: np.random.RandomState) -> bool:
        """gymnasium's track generator, drawing from gym 0.20's RandomState instead of `np_random`.

        Both generators make the same `uniform` draws in the same order, so the
        draws decide the same track as the authors' environment did.
        """
        generator = self._np_random
        self._np_random = random_state
        try:
            return self._create_track()
        finally:
            self._np_random = generator

    # --- hooks for the obstacle env -------------------------------------------------------------

    def on_seed(self, seed: int) -> None:
        """A new seed was drawn or given (before the track is built)."""

    def on_reset(self) -> None:
        """After the track and the agent car exist, before the first (action-less) step."""

    def applied_action(self, action: np.ndarray) -> np.ndarray:
        """The action the car receives (driving aids may change it)."""
        return action

    def before_physics(self) -> None:
        """Before the car and the world step."""

    def after_physics(self) -> None:
        """After the world stepped, before the frame is drawn and the reward computed."""

    def step_flags(self) -> dict:
        """Extra info flags of an action step, in the env's key order."""
        return {}

    def is_agent_wheel(self, wheel: Any) -> bool:
        return True

    def on_other_contact(self, contact: Any, begin: bool) -> None:
        """A contact that involves no road tile."""

    def tile_touched(self, tile: Any, toucher: Any = None) -> None:
        """A body (`toucher`, the userData of the other body) began or ended touching `tile`.

        Any touch repaints the tile in the plain road colour, as gym did.
        """
        self._poly_colors[tile.poly_index] = render.gl_color(render.ROAD_RGB)

    # --- drawing ----------------------------------------------------------------------------------

    def _index_road(self) -> None:
        """Road tiles and kerbs as arrays, in gym 0.20's colours (tile i: grey 0.4 + 0.01 * (i % 3))."""
        colors, tile_index = [], 0
        for poly_index, (_, color) in enumerate(self.road_poly):
            if tuple(color) == (255, 255, 255):
                colors.append(render.BORDER_WHITE)
            elif tuple(color) == (255, 0, 0):
                colors.append(render.BORDER_RED)
            else:
                tile = self.road[tile_index]
                tile.poly_index = poly_index
                shade = 0.01 * (tile_index % 3)
                colors.append(render.gl_color([c + shade for c in render.ROAD_RGB]))
                tile_index += 1
        self._polys = np.array([poly for poly, _ in self.road_poly], dtype=np.float64)
        self._poly_colors = colors

    def camera(self, width: int, height: int) -> render.Camera:
        assert self.car is not None
        return render.Camera(self.car.hull.position, self.car.hull.angle, self.car.hull.linearVelocity, self.t,
                             width, height)

    def draw(self, surface, indicators: Optional[bool] = None) -> None:
        """Draws the current scene onto an (H, W, 3) uint8 array or a pygame surface of any size.

        gym 0.20's view, squeezed to fit; arrays get OpenGL's pixel coverage.
        """
        if isinstance(surface, np.ndarray):
            height, width = surface.shape[:2]
            surface[:] = 0
        else:
            width, height = surface.get_size()
            surface.fill((0, 0, 0))
        camera = self.camera(width, height)  # gym 0.20 cleared to black: outside the playfield stays black
        field = np.array([[(PLAYFIELD, PLAYFIELD), (PLAYFIELD, -PLAYFIELD), (-PLAYFIELD, -PLAYFIELD),
                           (-PLAYFIELD, PLAYFIELD)]])
        render.draw_polygons(surface, camera, field, [render.BACKGROUND])
        render.draw_polygons(surface, camera, self._grass, [render.GRASS] * len(self._grass))
        render.draw_polygons(surface, camera, self._polys, self._poly_colors)
        self.draw_objects(surface, camera)
        if self.indicator_bar if indicators is None else indicators:
            render.draw_indicators(surface, self.car, width, height)

    def draw_objects(self, surface, camera: render.Camera) -> None:
        """Everything on the road: here the agent's car."""
        render.draw_car(surface, camera, self.car, AGENT_HULL_RGB)

    def _render(self, mode: str):
        import pygame

        if "t" not in self.__dict__:
            return None  # reset() not called yet
        if mode == "state_pixels":
            width, height = self.state_size
            image = np.zeros((height, width, 3), dtype=np.uint8)
            self.draw(image)
            return image
        if mode == "rgb_array":
            surface = pygame.Surface((VIDEO_W, VIDEO_H))
            self.draw(surface, indicators=True)
            return render.surface_to_array(surface)
        if mode == "human":
            if self._window is None:
                pygame.display.init()
                self._window = pygame.display.set_mode((render.WINDOW_W, render.WINDOW_H))
                self.clock = pygame.time.Clock()
            pygame.event.pump()
            self.draw(self._window, indicators=True)
            pygame.display.flip()
            self.clock.tick(self.metadata["render_fps"])
            return None
        raise ValueError(f"render mode must be one of {self.metadata['render_modes']}, got {mode!r}")

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
        super().close()
