# fmnist_2c2d: this library's runs at DeepOBS's published settings against DeepOBS's published baselines.
# From the repository root, with the output directory of the lab grid the README gives (runs 1, 2, 3: SGD, Momentum,
# Adam):
#   gnuplot -e "lab='DIR'" docs/figures/deepobs-fmnist_2c2d-baselines.gp
# writes docs/figures/deepobs-fmnist_2c2d-baselines.png. The bands are DeepOBS's mean ± std over its seeds
# (docs/data/deepobs-fmnist_2c2d-baselines.csv), the lines this library's run per optimiser (DIR/eval-run<k>.csv).
if (!exists("lab")) lab = 'fmnist_2c2d-baselines'
published = 'docs/data/deepobs-fmnist_2c2d-baselines.csv'
set datafile separator comma
set terminal pngcairo size 1400,520 noenhanced font 'Sans,11' linewidth 1
set output 'docs/figures/deepobs-fmnist_2c2d-baselines.png'
set grid lc rgb '#d0d0d0'
set border lc rgb '#404040'
set style fill transparent solid 0.25 noborder
set xlabel 'epoch'
set xrange [0:100]
array colour[3] = ['#1b6bbb', '#bb6b1b', '#2e9e4a']
array name[3] = ['SGD lr 0.158', 'Momentum 0.99 lr 0.00251', 'Adam lr 0.000251']
# The published file's data rows per optimiser (its header is row 0): epochs 0 ... 100.
first(k) = 1 + 101 * (k - 1)
last(k) = 101 * k
set multiplot layout 1,2 title "fmnist_2c2d (batch 128): bands, DeepOBS's published baselines (mean ± std over 6-7 seeds, TensorFlow); lines, this library (seed 0)"
set title 'Test accuracy'
set ylabel 'test accuracy (%)'
set yrange [84:94]
set key bottom right
plot for [k=1:3] published every ::first(k)::last(k) using 2:(100 * ($4 - $5)):(100 * ($4 + $5)) \
       with filledcurves lc rgb colour[k] notitle, \
     for [k=1:3] sprintf('%s/eval-run%d.csv', lab, k) every ::1 using 2:(100 * $9) with lines lw 2 \
       lc rgb colour[k] title name[k]
set title 'Test loss'
set ylabel 'test loss (cross-entropy)'
set yrange [0.2:0.8]
set key bottom right
plot for [k=1:3] published every ::first(k)::last(k) using 2:($6 - $7):($6 + $7) \
       with filledcurves lc rgb colour[k] notitle, \
     for [k=1:3] sprintf('%s/eval-run%d.csv', lab, k) every ::1 using 2:8 with lines lw 2 lc rgb colour[k] \
       title name[k]
unset multiplot
