"""Fitting the parameters of an ODE by differentiating through its solver, a ``jg.scan``.

The Lotka-Volterra predator-prey model

    du/dt = a u - b u v          (prey)
    dv/dt = c u v - d v          (predators)

is integrated with classical Runge-Kutta (RK4) steps, one step being the body
of a ``jg.scan`` over N = 200 steps.  Noisy observations of both populations
at 40 times come from the true parameters (a, b, c, d) = (1, 0.5, 0.5, 1),
integrated independently in NumPy.  Starting from wrong parameters, Adam
(``jg.optim.adam``) fits them by minimizing the squared error of the simulated
trajectory; the gradient of that loss is reverse-mode AD through all 200 RK4
steps.  The parameters are fitted as logarithms (they stay positive).

What it teaches:

- the adjoint of a loop is a loop run backwards: ``jg.grad`` of a scan is a
  reverse scan over the steps, carrying the cotangent of the state (this is
  the discrete adjoint method, "backpropagation through time");
- the backward loop needs the state every step started from, so the forward
  loop stores the N carries: memory grows like the number of steps (here a
  few kB), compile time does not;
- the graph holds the body once, whatever N: the script compiles the loss and
  its gradient for N = 20 and N = 2000 steps and prints the size of both
  programs (the same);
- the gradient agrees with central finite differences of the loss.

It prints the recovered parameters next to the true ones, the final loss and
the finite-difference check, and plots the data, the initial-guess and the
fitted trajectories, the phase plane and the loss curve.

    python examples/ode_scan.py [--small] [--out DIR]     # writes ode_scan.png
"""
from __future__ import annotations

import sys
import time

import _common
import numpy as np

import jitgrad as jg

NAMES = ("a", "b", "c", "d")
TRUE = np.array([1.0, 0.5, 0.5, 1.0])            # prey growth, predation, predator growth, death
GUESS = TRUE * np.array([0.7, 1.4, 1.3, 0.75])    # where the fit starts
Z0 = (2.0, 0.5)                                  # initial prey and predator populations
T_END, N_STEPS, EVERY, NOISE = 15.0, 200, 5, 0.1  # observe every 5th step: 40 times


def rhs(theta, u, v):
    a, b, c, d = theta
    return a * u - b * u * v, c * u * v - d * v


def rk4_step(theta, u, v, dt):
    """One classical Runge-Kutta step; works on Tensors and on NumPy numbers alike."""
    k1u, k1v = rhs(theta, u, v)
    k2u, k2v = rhs(theta, u + 0.5 * dt * k1u, v + 0.5 * dt * k1v)
    k3u, k3v = rhs(theta, u + 0.5 * dt * k2u, v + 0.5 * dt * k2v)
    k4u, k4v = rhs(theta, u + dt * k3u, v + dt * k3v)
    return (u + dt / 6 * (k1u + 2 * k2u + 2 * k3u + k4u),
            v + dt / 6 * (k1v + 2 * k2v + 2 * k3v + k4v))


def simulate(log_theta, n_steps, dt):
    """The trajectory (u, v) at steps 1..n_steps, shapes (n_steps,): one ``jg.scan``."""
    theta = [jg.exp(log_theta[i]) for i in range(4)]   # read from outside the body: loop inputs

    def body(state, _):
        new = rk4_step(theta, *state, dt)
        return new, new                               # carry the state, and emit it

    init = (jg.constant(np.float64(Z0[0])), jg.constant(np.float64(Z0[1])))
    _, (us, vs) = jg.scan(body, init, length=n_steps)
    return us, vs


def loss_of(log_theta, obs, n_steps, dt, every):
    """Mean squared error of the simulated populations at the observed steps."""
    us, vs = simulate(log_theta, n_steps, dt)
    seen = slice(every - 1, None, every)
    return jg.mean((us[seen] - obs[:, 0]) ** 2 + (vs[seen] - obs[:, 1]) ** 2), us, vs


def numpy_trajectory(theta, n_steps, dt, substeps=10):
    """The same ODE in plain NumPy with 10 times smaller steps: the data, independent of jitgrad."""
    u, v, out = Z0[0], Z0[1], []
    for _ in range(n_steps):
        for _ in range(substeps):
            u, v = rk4_step(theta, u, v, dt / substeps)
        out.append((u, v))
    return np.array(out)


def program_sizes(n_obs=10):
    """Compile loss and gradient for 20 and for 2000 steps (the same time span, ``n_obs``
    observations); the lowered schedule and the generated source do not grow with N. Compiling
    generates the source; the Numba compilation happens at a first call, which these never get."""
    sizes = []
    for n in (20, 2000):
        log_theta = jg.param(f"log_theta_{n}", np.log(GUESS))
        obs = jg.input("obs", (n_obs, 2))
        loss, _, _ = loss_of(log_theta, obs, n, T_END / n, n // n_obs)
        start = time.perf_counter()
        f = jg.compile([obs], [loss] + jg.grad(loss, [log_theta]), wait=True)
        sizes.append((n, len(f.schedule), len(f.source.splitlines()), time.perf_counter() - start))
    return sizes


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    steps = 400 if args.small else 2000
    dt = T_END / N_STEPS
    rng = np.random.default_rng(0)
    clean = numpy_trajectory(TRUE, N_STEPS, dt)
    data = clean[EVERY - 1::EVERY] + NOISE * rng.normal(size=(N_STEPS // EVERY, 2))
    t_grid, t_obs = dt * np.arange(N_STEPS + 1), dt * np.arange(EVERY, N_STEPS + 1, EVERY)

    log_theta = jg.param("log_theta", np.log(GUESS))
    obs, lr = jg.input("obs", data.shape), jg.input("lr", ())
    loss, us, vs = loss_of(log_theta, obs, N_STEPS, dt, EVERY)
    (g,) = jg.grad(loss, [log_theta])                 # a reverse scan over the 200 steps
    # wait=True: compile at the first call (the reference tier would run the loop step by step)
    step = jg.compile([obs, lr], [loss, g, us, vs],
                      updates=jg.optim.adam(loss, [log_theta], lr=lr, grads=[g]), wait=True)

    print(f"Lotka-Volterra, RK4 with dt = {dt} in a jg.scan of {N_STEPS} steps; "
          f"{len(data)} noisy observations (sigma = {NOISE}) of each population")
    start = time.perf_counter()
    losses = np.empty(steps)
    for t in range(steps):
        rate = 0.05 * 0.1 ** (t / steps)              # decays from 0.05 to 0.005
        losses[t], _, u_t, v_t = step(data, rate)
        if t == 0:
            first_call, start = time.perf_counter() - start, time.perf_counter()
            initial = np.vstack([Z0, np.column_stack([u_t, v_t])])     # from t = 0, for the plot
        if (t + 1) % (steps // 4) == 0:
            print(f"  step {t + 1:>5}  loss {losses[t]:.6f}  (a, b, c, d) = "
                  f"({', '.join(f'{p:.4f}' for p in np.exp(log_theta.value))})")
    train_time = time.perf_counter() - start
    fitted_log = log_theta.value.copy()
    final_loss, _, u_f, v_f = step(data, 0.0)         # lr = 0: an evaluation, params unchanged
    fitted = np.vstack([Z0, np.column_stack([u_f, v_f])])
    noise_floor = 2 * np.mean((data - clean[EVERY - 1::EVERY]) ** 2)
    print(f"  first call {first_call:.1f} s (Numba compiles, unless its disk cache has it), "
          f"then {steps - 1} steps in {train_time:.2f} s")

    print("\n  param   true   initial  fitted   rel. error")
    rel = np.abs(np.exp(fitted_log) - TRUE) / TRUE
    for name, tv, gv, fv, e in zip(NAMES, TRUE, GUESS, np.exp(fitted_log), rel):
        print(f"  {name:<5} {tv:6.3f}  {gv:7.3f}  {fv:7.4f}  {e:9.2e}")
    print(f"max relative parameter error {rel.max():.2e}; final loss {float(final_loss):.6f} "
          f"(the noise alone gives {noise_floor:.6f})")

    # the reverse-mode gradient against central differences, at the initial guess
    h = 1e-6
    log_theta.value = np.log(GUESS)
    grad_ad = step(data, 0.0)[1]
    grad_fd = np.empty(4)
    for i in range(4):
        bump = np.zeros(4)
        bump[i] = h
        log_theta.value = np.log(GUESS) + bump
        up = float(step(data, 0.0)[0])
        log_theta.value = np.log(GUESS) - bump
        grad_fd[i] = (up - float(step(data, 0.0)[0])) / (2 * h)
    log_theta.value = fitted_log
    fd_error = np.linalg.norm(grad_ad - grad_fd) / np.linalg.norm(grad_fd)
    print(f"\ngradient at the initial guess, d loss / d log(a, b, c, d):\n"
          f"  reverse scan        {np.array2string(grad_ad, precision=6)}\n"
          f"  central difference  {np.array2string(grad_fd, precision=6)}  (h = {h:g})\n"
          f"finite-difference check: relative error {fd_error:.1e}")

    sizes = program_sizes()
    print("\nloss + gradient compiled for N steps over the same time span:")
    for n, eqs, lines, secs in sizes:
        print(f"  N = {n:>4}: {eqs} equations, {lines} lines of generated source ({secs:.2f} s to build)")
    same = len({(eqs, lines) for _, eqs, lines, _ in sizes}) == 1
    print(f"program size independent of the number of steps: {same}")

    plot(t_grid, t_obs, data, initial, fitted, losses, noise_floor, args.out)
    return 0 if same else 1


def plot(t_grid, t_obs, data, initial, fitted, losses, noise_floor, out):
    plt = _common.pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.4), gridspec_kw={"width_ratios": [1.6, 1, 1]})
    for k, (name, col) in enumerate([("prey u", "tab:blue"), ("predators v", "tab:red")]):
        a.plot(t_obs, data[:, k], "o", ms=4, color=col, alpha=0.7, label=f"{name}: observed")
        a.plot(t_grid, initial[:, k], "--", lw=1.2, color=col, alpha=0.6, label=f"{name}: initial guess")
        a.plot(t_grid, fitted[:, k], "-", lw=1.8, color=col, label=f"{name}: fitted")
    a.set(xlabel="time t", ylabel="population", title="Lotka-Volterra: data, initial guess, fit")
    a.legend(fontsize=8, ncol=3, loc="upper center")
    a.set_ylim(0, 1.3 * a.get_ylim()[1])
    b.plot(data[:, 0], data[:, 1], "o", ms=4, color="gray", alpha=0.7, label="observed")
    b.plot(initial[:, 0], initial[:, 1], "--", color="tab:orange", label="initial guess")
    b.plot(fitted[:, 0], fitted[:, 1], "-", color="tab:green", lw=1.8, label="fitted")
    b.set(xlabel="prey u", ylabel="predators v", title="phase plane")
    b.legend(fontsize=8)
    c.semilogy(np.arange(1, len(losses) + 1), losses, color="tab:blue", label="training loss")
    c.axhline(noise_floor, color="k", ls=":", lw=1, label="noise level (loss of the true curve)")
    c.set(xlabel="Adam step", ylabel="mean squared error", title="loss, through 200 RK4 steps")
    c.legend(fontsize=8)
    _common.save_figure(fig, out, "ode_scan.png")


if __name__ == "__main__":
    sys.exit(main())
