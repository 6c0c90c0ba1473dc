# Per-epoch curves of one or more training runs, from the CSV files the training programs write with --log
# (columns: epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,weight_norm): loss on a log scale on the
# left, accuracy on the right; training solid, test dashed; one colour per run.
#
#   build/examples/mnist_mlp --optimizer adam --log adam.csv
#   build/examples/mnist_mlp --optimizer sgd --lr 0.1 --log sgd.csv
#   gnuplot -e "logs='adam.csv sgd.csv'; titles='Adam SGD'; out='curves.png'" scripts/plot_curves.gp
#
# Variables: logs (required, space-separated paths), titles (default: the paths), out (default curves.png),
# title (the figure's title). compare_optimizers draws its own mean +- std figures (see examples/common/lab.hpp).

if (!exists("logs")) {
  print "usage: gnuplot -e \"logs='a.csv b.csv'; titles='A B'; out='curves.png'\" scripts/plot_curves.gp"
  exit status 2
}
if (!exists("titles")) titles = logs
if (!exists("out")) out = 'curves.png'
if (!exists("title")) title = 'Training curves'

if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1400,600 noenhanced font 'Sans,11'
} else {
  set terminal png truecolor size 1400,600 noenhanced
}
set output out
set datafile separator ','
set key autotitle columnheader
set grid lc rgb '#d0d0d0'
set xlabel 'epoch'
stats word(logs, 1) using 1 nooutput
if (STATS_max <= 30) { set xtics 1 }
colour(i) = word('#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf', (i - 1) % 10 + 1)

set multiplot layout 1,2 title title
set title 'loss (cross-entropy)'
set logscale y
set key top right box opaque Left reverse
plot for [i=1:words(logs)] word(logs, i) using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb colour(i) \
       title word(titles, i) . ' train', \
     for [i=1:words(logs)] word(logs, i) using 1:4 with linespoints lw 2 pt 6 ps 0.6 dt 2 lc rgb colour(i) \
       title word(titles, i) . ' test'
unset logscale y
set title 'accuracy (%)'
set key bottom right box opaque Left reverse
plot for [i=1:words(logs)] word(logs, i) using 1:(100 * $3) with linespoints lw 2 pt 7 ps 0.6 lc rgb colour(i) \
       title word(titles, i) . ' train', \
     for [i=1:words(logs)] word(logs, i) using 1:(100 * $5) with linespoints lw 2 pt 6 ps 0.6 dt 2 lc rgb colour(i) \
       title word(titles, i) . ' test'
unset multiplot
unset output
