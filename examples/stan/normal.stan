data {
int<lower=0> N; // Number of data points
array[N] real y; // Data
}
parameters {
real mu; // Mean
real<lower=0> sigma; // Standard deviation
}
model {
// Priors
mu ~ normal(0, 1);
sigma ~ normal(0, 1);
// Likelihood
y ~ normal(mu, sigma);
}
