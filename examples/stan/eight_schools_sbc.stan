// Eight schools (non-centred) with a simulation of its data in generated quantities,
// for `gpsamp sbc --stan`: mu_sim, tau_sim and theta_raw_sim are drawn from the prior
// (the `_sim` of every parameter), y_sim from them (the `_sim` of the data it replaces).
data {
  int<lower=0> J;
  vector<lower=0>[J] sigma;
  vector[J] y;
}
parameters {
  real mu;
  real<lower=0> tau;
  vector[J] theta_raw;
}
transformed parameters {
  vector[J] theta = mu + tau * theta_raw;
}
model {
  mu ~ normal(0, 5);
  tau ~ normal(0, 5);
  theta_raw ~ std_normal();
  y ~ normal(theta, sigma);
}
generated quantities {
  real mu_sim = normal_rng(0, 5);
  real tau_sim = abs(normal_rng(0, 5));
  vector[J] theta_raw_sim = to_vector(normal_rng(rep_vector(0, J), 1));
  vector[J] y_sim = to_vector(normal_rng(mu_sim + tau_sim * theta_raw_sim, sigma));
}
