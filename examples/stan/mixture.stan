data {
int<lower=0> N; // Number of data points
int<lower=0> K; // Number of components
vector[N] x;
vector[N] y;
}
parameters {
simplex[K] pi; // Mixture weights
vector[K] w; // Means
vector[K] c; // Bias
vector<lower=0>[K] sigma; // Standard deviations
}
model {
// Priors
pi ~ dirichlet(rep_vector(1, K));
w ~ normal(0, 1);
c ~ normal(0, 1);
sigma ~ normal(0, 1);
// Likelihood
for (n in 1:N) {
vector[K] log_likelihoods; // Log likelihoods for each component
for (k in 1:K) {
log_likelihoods[k] = log(pi[k]) + normal_lpdf(y[n] | x[n] * w[k] + c[k], sigma[k]);
}
target += log_sum_exp(log_likelihoods); // Combine log-likelihoods across components
}
}
